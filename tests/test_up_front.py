"""Misuse is refused up front, in one line (issue 22 item 6): protocol sizes, strengths, vector shapes,
and the command lines of every analysis module and of `tv-lens`, before any model loads."""

import math

import numpy as np
import pytest
import torch

from analyses import clusters, conflicting_tasks, function_vectors, layer_sweep, main_table, top_tokens
from tv_lens.cli.main import main as tv_lens_main
from tv_lens.patching.interventions import Intervention
from tv_lens.settings import PAPER, Settings
from tv_lens.task_vectors.applying import apply
from tv_lens.task_vectors.learning import learn
from tv_lens.task_vectors.vector import TaskVector


def one_line(error: Exception) -> str:
    message = str(error)
    assert "\n" not in message
    return message


@pytest.mark.parametrize(("sizes", "message"), [
    ({"n_test": 0}, "n_test must be at least 1, got 0"),
    ({"n_shots": -1}, "n_shots must be at least 1, got -1"),
    ({"n_dev": 2.5}, "n_dev must be a whole number, got 2.5"),
    ({"n_baseline": True}, "n_baseline must be a whole number, got True"),
    ({"n_dummies": "2"}, "n_dummies must be a whole number, got '2'"),
])
def test_settings_refuse_a_bad_size_when_made(sizes, message):
    """Why: Settings(n_test=0) failed later with 'stack expects a non-empty TensorList'; n_shots=-1 was accepted."""
    with pytest.raises(ValueError) as caught:
        Settings(**sizes)
    assert one_line(caught.value) == message
    with pytest.raises(ValueError, match=message.split(",")[0]):
        PAPER.but(**sizes)


def test_analysis_settings_refuse_a_bad_size_of_their_own():
    with pytest.raises(ValueError, match="n_per_task must be at least 1, got 0"):
        clusters.ClusterSettings(n_per_task=0)
    with pytest.raises(ValueError, match="k must be at least 1, got 0"):
        function_vectors.FVSettings().but(k=0)
    with pytest.raises(ValueError, match="n_items must be a whole number"):
        conflicting_tasks.ConflictSettings(n_items=None)


@pytest.fixture(scope="module")
def theta(tiny_llama):
    return learn(tiny_llama, [("ab", "c"), ("de", "f")], ["gh", "ij"], layer=1)


@pytest.mark.parametrize("strength", ["2", math.nan, math.inf, -math.inf, True, None, torch.tensor([1.0, 2.0])])
def test_a_strength_that_is_not_a_finite_number_is_one_line(tiny_llama, theta, strength):
    with pytest.raises(ValueError) as caught:
        apply(tiny_llama, theta, ["ab"], mode="add", strength=strength)
    assert one_line(caught.value).startswith("strength must be a finite number, got ")


def test_a_finite_real_strength_of_any_numeric_type_is_taken(tiny_llama, theta):
    as_float = apply(tiny_llama, theta, ["ab"], mode="add", strength=2.0)
    assert apply(tiny_llama, theta, ["ab"], mode="add", strength=2) == as_float
    assert apply(tiny_llama, theta, ["ab"], mode="add", strength=np.float64(2.0)) == as_float
    assert Intervention(1, None, mode="scale", strength=np.int64(3)).strength == 3.0


@pytest.mark.parametrize(("vectors", "got"), [
    (torch.zeros(64), "got a float32 tensor of shape [64]"),
    (torch.zeros(3, 64, 1), "got a float32 tensor of shape [3, 64, 1]"),
    (torch.zeros(3, 64, dtype=torch.long), "got a int64 tensor"),
    (torch.zeros(0, 64), "of shape [0, 64]"),
    ([[0.0] * 64], "got a list"),
])
def test_a_task_vector_of_the_wrong_shape_or_kind_is_one_line(vectors, got):
    """Why: a one-dimensional vector gave an unrelated error far from where it was made."""
    with pytest.raises(ValueError) as caught:
        TaskVector(vectors=vectors)
    message = one_line(caught.value)
    assert message.startswith("a TaskVector's vectors must be a float tensor [n_layers, d_model]") and got in message


def test_interventions_and_apply_refuse_tensors_of_the_wrong_shape(tiny_llama, theta):
    with pytest.raises(ValueError, match=r"one-dimensional float tensor .* shape \[3, 64\].*theta.at\(layer\)"):
        Intervention(1, theta.vectors)
    for bare in (theta.vectors, theta.vectors[1]):
        with pytest.raises(TypeError, match="must be a TaskVector, an Intervention or a list of them, got Tensor"):
            apply(tiny_llama, bare, ["ab"])
    with pytest.raises(ValueError, match="layer 7 is not one of this vector's layers 0..2"):
        TaskVector(vectors=theta.vectors, layer=7)


ANALYSES = {"main_table": main_table.main, "layer_sweep": layer_sweep.main, "top_tokens": top_tokens.main,
            "clusters": clusters.main, "function_vectors": function_vectors.main,
            "conflicting_tasks": conflicting_tasks.main}
BAD = {
    "--tasks nope": (["--tasks", "nope"], "unknown task 'nope'"),
    "--shard 0/4": (["--shard", "0/4"], "a shard is I/N with 1 <= I <= N, got 0/4"),
    "--n-test 0": (["--n-test", "0"], "argument --n-test: must be at least 1, got 0"),
    "--seed x": (["--seed", "x"], "argument --seed: invalid int value: 'x'"),
}


@pytest.fixture
def no_model(monkeypatch):
    monkeypatch.setattr("tv_lens.models.loading.load_model", lambda *a, **k: pytest.fail("the model loaded"))


@pytest.mark.parametrize("analysis", ANALYSES)
@pytest.mark.parametrize("bad", BAD)
def test_every_analysis_refuses_bad_arguments_in_one_line_before_the_model_loads(analysis, bad, no_model, capsys,
                                                                                 tmp_path):
    """Why: `python -m analyses.main_table --shard 0/4` printed a 20-44 line traceback, --n-test 0 only
    after the model loaded."""
    argv, message = BAD[bad]
    if analysis == "function_vectors" and bad == "--n-test 0":
        argv, message = ["--fv-n-test", "0"], "argument --fv-n-test: must be at least 1, got 0"
    if analysis == "conflicting_tasks" and bad == "--tasks nope":
        argv = ["--pairs", "nope:to_upper"]
    if analysis in ("layer_sweep", "top_tokens") and bad == "--shard 0/4":
        message = "unrecognized arguments: --shard 0/4"  # these analyses have no units of their own to share
    code = ANALYSES[analysis]([*argv, "--model", "tiny-llama", "--out", str(tmp_path / "run")])
    out, err = capsys.readouterr()
    assert code == 2 and out == "" and err.count("\n") == 1 and message in err, err
    assert err.startswith(f"python -m analyses.{analysis}: error: ")


@pytest.mark.parametrize(("argv", "message"), [
    (["apply", "v.safetensors", "a", "--strength", "nan"], "argument --strength/--alpha: must be a finite number"),
    (["apply", "v.safetensors", "a", "--max-new-tokens", "0"], "argument --max-new-tokens: must be at least 1"),
    (["learn", "--task", "next_letter", "--out", "x.safetensors", "--k", "0"], "argument --k: must be at least 1"),
    (["fv", "--task", "next_letter", "--n-clean", "0"], "argument --n-clean: must be at least 1"),
    (["reproduce", "--tasks", "nope"], "unknown task 'nope'"),
    (["models", "--threads", "0"], "argument --threads: must be at least 1, got 0"),
    (["nope"], "invalid choice: 'nope'"),
])
def test_tv_lens_refuses_bad_arguments_in_one_line_before_the_model_loads(argv, message, no_model, capsys):
    code = tv_lens_main(argv)
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and message in err, err
