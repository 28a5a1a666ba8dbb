"""The example notebook: saved outputs from the embedded model, and it runs top to bottom on the tiny
model (fast) and on the embedded one (slow, where it must print what it saved).

Refresh the saved outputs after a change that moves its numbers:
    OMP_NUM_THREADS=1 jupyter execute --inplace examples/explore.ipynb
"""

import os
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

NOTEBOOK = Path(__file__).parents[1] / "examples" / "explore.ipynb"
PLOTLY = "application/vnd.plotly.v1+json"


def execute(model: str):
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(notebook, timeout=900, kernel_name="python3",
                                     resources={"metadata": {"path": str(NOTEBOOK.parent)}})
    client.execute(env={**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TV_LENS_NOTEBOOK_MODEL": model})
    return notebook


def outputs(notebook) -> list:
    return [out for cell in notebook.cells if cell.cell_type == "code" for out in cell.outputs]


def printed(notebook) -> str:
    return "".join(out.text for out in outputs(notebook) if out.output_type == "stream" and out.name == "stdout")


def check_ran(notebook) -> None:
    assert [out for out in outputs(notebook) if out.output_type == "error"] == []
    assert sum(PLOTLY in out.get("data", {}) for out in outputs(notebook)) == 2  # the layer sweep and the t-SNE
    for text in ("best layer", "θ − mean θ", "alpha   8  θ − mean θ  accuracy", "silhouette", "follows B"):
        assert text in printed(notebook), text
    errors = "".join(out.text for out in outputs(notebook) if out.output_type == "stream" and out.name == "stderr")
    assert "Loading weights" not in errors and "Moving model" not in errors  # no third-party bars or lines


def test_saved_outputs_come_from_the_embedded_model():
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert [cell.execution_count for cell in code] == list(range(1, len(code) + 1)), "save it executed, in order"
    assert printed(notebook).startswith("gemma-3-270m 18 layers")
    check_ran(notebook)


def test_notebook_runs_on_the_tiny_model():
    notebook = execute("tiny-llama")
    assert printed(notebook).startswith("tiny-llama ")
    check_ran(notebook)


@pytest.mark.slow
def test_notebook_runs_on_the_embedded_model_and_prints_what_it_saved():
    saved = nbformat.read(NOTEBOOK, as_version=4)
    notebook = execute("gemma-3-270m")
    check_ran(notebook)
    assert printed(notebook) == printed(saved)
