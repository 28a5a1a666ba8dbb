"""One Settings for the protocol sizes: the paper's by default, changed by keyword, unknown sizes refused."""

import pytest

from tv_lens.settings import PAPER, Settings
from tv_lens.task_vectors.task_level import learn_task
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


def test_an_analysis_holds_the_protocol_sizes_and_records_those_it_uses_beside_its_own():
    from analyses.clusters import ClusterSettings
    from analyses.conflicting_tasks import ConflictSettings
    from analyses.function_vectors import FVSettings

    assert ConflictSettings().record() == {"n_shots": 4, "n_dummies": 2, "n_items": 50}
    assert ClusterSettings().sizes == PAPER.but(n_shots=4) == ConflictSettings().sizes
    assert FVSettings().record() == {"n_shots": 10, "n_dev": 50, "n_test": 50, "n_clean": 100, "n_corrupted": 25,
                                     "k": 10, "tv_contexts": 16, "formulations": FVSettings().formulations,
                                     "rankings": ("universal", "task"), "queries": "icl_correct",
                                     "single_token_filter": False, "compare_all_queries": True}
    changed = FVSettings().but(n_dev=3, n_clean=4)
    assert (changed.sizes.n_dev, changed.n_clean, changed.sizes.n_test) == (3, 4, 50)


def test_a_size_an_analysis_does_not_use_is_refused_in_one_line():
    from analyses.clusters import ClusterSettings
    from analyses.function_vectors import FVSettings

    with pytest.raises(TypeError, match="ClusterSettings has no size n_test: it uses n_shots, n_dummies, n_per_task"):
        ClusterSettings().but(n_test=3)
    with pytest.raises(TypeError, match="FVSettings has no size n_dummies"):
        FVSettings().but(n_dummies=3)
    with pytest.raises(ValueError, match="unknown query set 'some'"):
        FVSettings().but(queries="some")
    with pytest.raises(ValueError, match="rankings must be some of universal, task"):
        FVSettings().but(rankings=("mine",))
