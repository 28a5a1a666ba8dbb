"""The architecture matrix (tests/model_matrix.py): every architecture, loaded with `tv.load_model(dir)` from a tiny
random-weight directory, against transformers' own forward pass with PyTorch hooks; and docs/models.md, which is
generated from it, up to date."""

from pathlib import Path

import pytest
from model_matrix import CHECKS, MATRIX, RUN, check_load_warning, declared, load_pair, render, save_tiny

ROOT = Path(__file__).parents[1]
pytestmark = pytest.mark.models


@pytest.fixture(scope="module")
def pairs(tmp_path_factory, one_thread):
    """Each architecture's pair, loaded on first use."""
    folder, loaded = tmp_path_factory.mktemp("matrix"), {}

    def pair(arch):
        if arch.name not in loaded:
            loaded[arch.name] = load_pair(arch, save_tiny(arch, folder / arch.model_class))
        return loaded[arch.name]

    return pair


def _cases():
    for arch in MATRIX:
        for check in CHECKS:
            marks = [pytest.mark.xfail(strict=True, reason=arch.broken[check])] if check in arch.broken else []
            yield pytest.param(arch, check, marks=marks, id=f"{arch.name}-{check}")


@pytest.mark.parametrize("arch, check", _cases())
def test_architecture(arch, check, pairs):
    RUN[check](pairs(arch))


@pytest.mark.parametrize("arch", MATRIX, ids=[a.name for a in MATRIX])
def test_loading_warns_as_the_note_says(arch, pairs):
    check_load_warning(pairs(arch))


def test_the_models_page_is_generated_from_the_matrix():
    page = (ROOT / "docs" / "models.md").read_text()
    assert page == render(declared()), "docs/models.md is stale: python -m tests.model_matrix --markdown docs/models.md"


def test_the_example_checkpoints_are_ones_transformer_lens_lists():
    from transformer_lens.supported_models import OFFICIAL_MODEL_NAMES

    assert [a.checkpoint for a in MATRIX if a.checkpoint and a.checkpoint not in OFFICIAL_MODEL_NAMES] == []


def test_the_page_names_the_embedded_models():
    from tv_lens.models.loading import EMBEDDED

    page = (ROOT / "docs" / "models.md").read_text()
    assert all(f"| `{name}` |" in page for name in EMBEDDED)
