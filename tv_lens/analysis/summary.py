"""Means over tasks (baseline, ICL, task vector) and the TV/ICL ratio, with 95% CIs from a
stratified bootstrap: items are resampled within each task, ICL and TV paired on the same items."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from tv_lens.codec import Record
from tv_lens.errors import TvLensError


@dataclass
class TaskHits:
    """Per-item correctness of one task: baseline items, and the test items scored for ICL and TV."""

    baseline: Sequence[bool]
    icl: Sequence[bool]
    tv: Sequence[bool]


@dataclass(frozen=True)
class Estimate(Record):
    """A point value with a 95% percentile-bootstrap interval."""

    value: float
    ci_low: float
    ci_high: float


@dataclass(frozen=True)
class GroupSummary(Record):
    """Means over a group of tasks (a category, or all of them)."""

    n_tasks: int
    baseline: Estimate
    icl: Estimate
    tv: Estimate
    tv_over_icl: Estimate


def _ratio(tv: np.ndarray, icl: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(icl > 0, tv / np.where(icl > 0, icl, 1), np.nan)


def _estimate(value: float, draws: np.ndarray) -> Estimate:
    finite = draws[np.isfinite(draws)]
    if not np.isfinite(value) or finite.size == 0:
        return Estimate(float(value), float("nan"), float("nan"))
    low, high = np.percentile(finite, [2.5, 97.5])
    return Estimate(float(value), float(low), float(high))


def summarize(tasks: Sequence[TaskHits], n_boot: int = 2000, seed: int = 0) -> GroupSummary:
    """Mean accuracy over `tasks` (each task weighs the same) and mean TV / mean ICL."""
    if not tasks:
        raise TvLensError("summarize needs at least one task")
    rng = np.random.default_rng(seed)
    means = {"baseline": np.zeros(n_boot), "icl": np.zeros(n_boot), "tv": np.zeros(n_boot)}
    points = {"baseline": 0.0, "icl": 0.0, "tv": 0.0}
    for task in tasks:
        base = np.asarray(task.baseline, dtype=float)
        icl, tv = np.asarray(task.icl, dtype=float), np.asarray(task.tv, dtype=float)
        if len(icl) != len(tv) or not len(icl) or not len(base):
            raise TvLensError("each task needs baseline items and the same non-empty test items for ICL and TV")
        test_draw = rng.integers(0, len(icl), (n_boot, len(icl)))
        base_draw = rng.integers(0, len(base), (n_boot, len(base)))
        for name, hits, draw in (("baseline", base, base_draw), ("icl", icl, test_draw), ("tv", tv, test_draw)):
            means[name] += hits[draw].mean(1) / len(tasks)
            points[name] += hits.mean() / len(tasks)
    ratio = _ratio(np.array(points["tv"]), np.array(points["icl"]))
    return GroupSummary(
        n_tasks=len(tasks),
        **{name: _estimate(points[name], means[name]) for name in means},
        tv_over_icl=_estimate(float(ratio), _ratio(means["tv"], means["icl"])),
    )
