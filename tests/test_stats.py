"""Wilson intervals for one accuracy, and bootstrap means over tasks with the TV/ICL ratio."""

import math

import pytest

from tv_lens.analysis.summary import TaskHits, summarize
from tv_lens.stats import Accuracy, wilson_interval


def test_wilson_interval_matches_the_formula_at_known_points():
    assert wilson_interval(8, 10) == pytest.approx((0.4902, 0.9433), abs=1e-4)
    assert wilson_interval(0, 10) == pytest.approx((0.0, 0.2775), abs=1e-4)
    assert wilson_interval(50, 50)[1] == 1.0 and wilson_interval(50, 50)[0] == pytest.approx(0.9287, abs=1e-4)
    assert all(math.isnan(x) for x in wilson_interval(0, 0))


def test_accuracy_counts_hits_and_reports_its_interval():
    acc = Accuracy.of([True, False, True, True])
    assert (acc.correct, acc.total, acc.value) == (3, 4, 0.75)
    assert acc.to_dict() == {"correct": 3, "total": 4, "value": 0.75, "ci_low": acc.ci[0], "ci_high": acc.ci[1]}
    assert str(acc) == f"0.75 [{acc.ci[0]:.2f}, {acc.ci[1]:.2f}]"


TASKS = [TaskHits(baseline=[1, 0, 0, 0], icl=[1, 1, 1, 0], tv=[1, 1, 0, 0]),
         TaskHits(baseline=[0, 0], icl=[1, 1], tv=[1, 0])]


def test_summary_points_are_means_over_tasks_and_their_ratio():
    s = summarize(TASKS, n_boot=500)
    assert s.n_tasks == 2
    assert (s.baseline.value, s.icl.value, s.tv.value) == pytest.approx((0.125, 0.875, 0.5))
    assert s.tv_over_icl.value == pytest.approx(0.5 / 0.875)
    for e in (s.baseline, s.icl, s.tv, s.tv_over_icl):
        assert e.ci_low <= e.value <= e.ci_high and e.ci_low < e.ci_high
    assert summarize(TASKS, n_boot=500, seed=1).icl.ci_low == summarize(TASKS, n_boot=500, seed=1).icl.ci_low


def test_icl_and_tv_are_resampled_on_the_same_items():
    same = [TaskHits(baseline=[1, 0], icl=[1, 0, 1, 0, 0], tv=[1, 0, 1, 0, 0])]
    ratio = summarize(same, n_boot=500).tv_over_icl
    assert (ratio.value, ratio.ci_low, ratio.ci_high) == (1.0, 1.0, 1.0)


def test_summary_refuses_what_it_cannot_summarize():
    with pytest.raises(ValueError, match="at least one task"):
        summarize([])
    with pytest.raises(ValueError, match="same non-empty test items"):
        summarize([TaskHits(baseline=[1], icl=[1, 0], tv=[1])])
