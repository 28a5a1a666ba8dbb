"""Progress bars (tv_lens.progress, on tqdm.auto) show in a terminal and in a Jupyter notebook, never in a log file
or under --quiet."""

import os
import sys
import types

import pytest

from tv_lens import progress


@pytest.fixture
def fake_kernel(monkeypatch):
    """This process seen as a Jupyter kernel, as IPython shows one."""
    shell = types.SimpleNamespace(config={"IPKernelApp": {}})
    monkeypatch.setitem(sys.modules, "IPython", types.SimpleNamespace(get_ipython=lambda: shell))


def test_bars_show_in_a_notebook_and_not_in_a_log(fake_kernel, monkeypatch):
    assert not sys.stdout.isatty()  # pytest captures stdout, as a log file would
    assert progress.in_notebook() and progress.shown()
    progress.set_quiet(True)
    try:
        assert not progress.shown()
    finally:
        progress.set_quiet(False)
    monkeypatch.setitem(sys.modules, "IPython", types.SimpleNamespace(get_ipython=lambda: None))  # a plain console
    assert not progress.in_notebook() and not progress.shown()


def test_a_notebook_cell_draws_the_bar():
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    cell = ("from tv_lens.progress import counter\n"
            "with counter(3, 'learning') as bar:\n"
            "    bar.update(3)")
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(cell)])
    nbclient.NotebookClient(notebook, timeout=120, kernel_name="python3").execute(env={**os.environ})
    outputs = notebook.cells[0].outputs
    assert [o for o in outputs if o.output_type == "error"] == []
    widgets = [o for o in outputs if "application/vnd.jupyter.widget-view+json" in o.get("data", {})]
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert widgets or "learning" in text, outputs
