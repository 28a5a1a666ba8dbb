"""One Settings for the protocol sizes: the paper's by default, changed by keyword, unknown sizes refused."""

import pytest

from tv_lens.settings import PAPER, Settings
from tv_lens.task_level import learn_task
from tv_lens.tasks import get_task


def test_paper_sizes_and_changes():
    assert (PAPER.n_shots, PAPER.n_dummies, PAPER.n_baseline, PAPER.n_dev, PAPER.n_test) == (5, 2, 100, 50, 50)
    changed = PAPER.but(n_test=10, n_shots=3)
    assert changed == Settings(n_shots=3, n_test=10) and PAPER == Settings()


def test_an_unknown_size_is_refused_in_one_line(tiny_llama):
    with pytest.raises(TypeError, match="unknown protocol size.*n_tests.*the sizes are n_shots"):
        PAPER.but(n_tests=10)
    with pytest.raises(TypeError, match="unknown protocol size"):
        learn_task(tiny_llama, get_task("next_letter"), k=2, n_tests=10)
