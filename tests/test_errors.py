"""Typical bad inputs through the public API: each raises a `tv.TvLensError` whose message is one line, and an
error that was a builtin `TypeError` or `KeyError` still is one."""

import pytest
import torch

import tv_lens as tv
from tv_lens.errors import TvLensTypeError
from tv_lens.tasks.task import UnknownQueryError


@pytest.fixture(scope="module")
def theta(tiny_llama):
    return tv.learn(tiny_llama, [("ab", "c"), ("de", "f")], dummies=["gh", "ij"], layer=1)


def one_line_error(call, *args, **kwargs) -> tv.TvLensError:
    with pytest.raises(tv.TvLensError) as caught:
        call(*args, **kwargs)
    message = str(caught.value)
    assert message and "\n" not in message and message == message.strip(), message
    return caught.value


def test_bad_inputs_raise_one_line_tv_lens_errors(tiny_llama, theta, tmp_path):
    assert "did you mean 'antonyms'?" in str(one_line_error(tv.get_task, "antonym"))
    assert "n_shots must be at least 1, got -1" in str(one_line_error(tv.Settings, n_shots=-1))
    assert "strength must be a finite number" in str(one_line_error(tv.apply, tiny_llama, theta, ["ab"],
                                                                    strength=float("nan")))
    assert "intervention mode must be one of" in str(one_line_error(tv.apply, tiny_llama, theta, ["ab"], mode="swap"))
    assert "out of range" in str(one_line_error(tv.apply, tiny_llama, theta, ["ab"], layer=99))
    malformed = tmp_path / "pairs.json"
    malformed.write_text('{"hot": "cold",')
    assert str(malformed) in str(one_line_error(tv.load_task, malformed))
    with pytest.raises(tv.TvLensError, match="no queries"):
        tv.apply(tiny_llama, theta, [])


def test_an_unknown_query_is_a_tv_lens_error_and_a_key_error_printed_as_one_clean_line():
    task = tv.get_task("antonyms")
    for call in (task.answers, task.canonical, lambda q: task.score("cold", q),
                 lambda q: tv.score_generation(task, q, "cold")):
        error = one_line_error(call, "hott")
        assert isinstance(error, KeyError) and isinstance(error, UnknownQueryError)
        assert str(error) == ("'hott' is not an input of task 'antonyms' (did you mean 'hot'?): pass one of its "
                              "inputs (task.inputs)")
    with pytest.raises(KeyError, match="a query is a string, not int"):
        task.answers(5)
    assert task.answers("hot")[0] == task.canonical("hot")


def test_a_wrong_kind_of_argument_is_a_tv_lens_error_and_a_type_error(tiny_llama, theta):
    for call in (lambda: tv.apply(tiny_llama, theta, "ab"), lambda: tv.apply(tiny_llama, torch.zeros(3), ["ab"]),
                 lambda: tv.Settings().but(n_shot=3), lambda: theta * "2"):
        error = one_line_error(call)
        assert isinstance(error, TypeError) and isinstance(error, TvLensTypeError)


def test_nan_activations_are_a_tv_lens_error_and_a_floating_point_error(tiny_llama, theta):
    nan = tv.TaskVector(vectors=torch.full_like(theta.vectors, float("nan")), **theta.metadata())
    error = one_line_error(tv.apply, tiny_llama, nan, ["ab"])
    assert isinstance(error, FloatingPointError) and "NaN in the model's activations" in str(error)
