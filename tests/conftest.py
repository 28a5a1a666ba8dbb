"""Shared fixtures: tiny random models (fast) and the embedded model (loaded once per session)."""

import os
import re

import pytest
import torch
from beartype import beartype
from jaxtyping import install_import_hook

JAXTYPING = re.compile(r"\b(?:Float|Int|Integer|UInt|Bool|Num|Real|Shaped)\[")


def check_shapes(function):
    """beartype on every function of tv_lens whose annotations hold a jaxtyping shape (all its arguments,
    with the shape dimensions bound across them); the others run unchecked, and so do the constructors of
    dataclasses, which check their own fields with the one-line errors the tests assert. The `model`
    parameter is left to the engine's own check (`tv_lens.patching.guard`), whose one-line refusal the tests assert."""
    annotations = getattr(function, "__annotations__", {})
    if function.__name__ != "__init__" and JAXTYPING.search(str(annotations)):
        function.__annotations__ = {name: hint for name, hint in annotations.items() if name != "model"}
        return beartype(function)
    return function


# jaxtyping shapes are checked at run time during the tests: the hook must be in place before tv_lens is imported
install_import_hook("tv_lens", "conftest.check_shapes")

os.environ.setdefault("HF_HUB_OFFLINE", "1")
# MKL's strict mode, as the CLI runs (tv_lens.threads.program_defaults): tests compare this process's numbers with
# those of `tv-lens` subprocesses bit for bit, and MKL reads the mode once, at its first matrix product
os.environ.setdefault("MKL_CBWR", "AUTO,STRICT")


@pytest.fixture(scope="session")
def session_threads() -> int:
    """Tests compare results of one process exactly; a thread count that adapted to the machine's load between
    two computations can change their last bits (tests/test_threads.py tests the adapting on its own state).
    Under pytest-xdist the workers split torch's threads, so that they do not spin against each other."""
    from tv_lens.threads import set_threads

    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))  # pytest-xdist's processes share the cores
    set_threads(max(1, torch.get_num_threads() // workers))
    return torch.get_num_threads()


@pytest.fixture(autouse=True)
def pinned_threads(session_threads):
    """A `tv-lens` command run inside the test process takes the process over as the program does (threads that
    adapt, MKL_CBWR): after each test the threads are pinned again and those variables are as they were."""
    from tv_lens.threads import adapting, set_threads

    env = {name: os.environ.get(name) for name in ("MKL_CBWR", "OMP_WAIT_POLICY")}
    yield
    for name, value in env.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    if adapting():
        set_threads(session_threads)


@pytest.fixture(scope="session")
def favourite():
    """A task factory: two thirds of the answers are '^', the token tiny-llama (random weights) predicts after most
    arrow prompts, the others `other`, which it rarely predicts; so ICL gets some queries right and some wrong."""
    import itertools
    import string

    from tv_lens.tasks import Task

    inputs = [a + b for a, b in itertools.product(string.ascii_lowercase[:10], repeat=2)]

    def make(name: str = "favourite", other: str = "Q") -> Task:
        return Task(name, "algorithmic", "mostly the tiny model's favourite token",
                    {x: ("^" if i % 3 else other) for i, x in enumerate(inputs)})

    return make


@pytest.fixture(scope="session")
def tiny_llama():
    from tv_lens.models.tiny import tiny_model

    return tiny_model("tiny-llama")


@pytest.fixture(scope="session")
def tiny_gemma():
    from tv_lens.models.tiny import tiny_model

    return tiny_model("tiny-gemma")


@pytest.fixture(scope="session", params=["tiny-llama", "tiny-gemma"])
def tiny(request):
    return request.getfixturevalue(request.param.replace("-", "_"))


@pytest.fixture(scope="session")
def gemma():
    from tv_lens.models.loading import load_model

    return load_model("gemma-3-270m")


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for a module: tiny models run 20x slower with two on a busy 2-core machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
