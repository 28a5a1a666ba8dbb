"""Shared fixtures: tiny random models (fast) and the embedded model (loaded once per session)."""

import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def tiny_llama():
    from tv_lens.tiny import tiny_model

    return tiny_model("tiny-llama")


@pytest.fixture(scope="session")
def tiny_gemma():
    from tv_lens.tiny import tiny_model

    return tiny_model("tiny-gemma")


@pytest.fixture(scope="session", params=["tiny-llama", "tiny-gemma"])
def tiny(request):
    return request.getfixturevalue(request.param.replace("-", "_"))


@pytest.fixture(scope="session")
def gemma():
    from tv_lens.models import load_model

    return load_model("gemma-3-270m")


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for a module: tiny models run 20x slower with two on a busy 2-core machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
