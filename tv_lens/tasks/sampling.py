"""Seeded sampling of evaluation items: a query, its answers, its demonstrations and dummy queries.

Everything is drawn with `random.Random(seed)` from sorted input lists, so the same seed gives the
same items in every Python process (no set iteration order, no `hash()`).
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass

from tv_lens.settings import PAPER
from tv_lens.tasks.task import Task


@dataclass(frozen=True)
class Item:
    """One evaluation item: the query, its accepted answers, (x, y) demonstrations, dummy queries.

    Demonstrations never contain the query; dummy queries differ from the query, from each other
    and from the demonstration inputs.
    """

    query: str
    answers: tuple[str, ...]
    demos: tuple[tuple[str, str], ...]
    dummies: tuple[str, ...]


@dataclass(frozen=True)
class Splits:
    """Test and dev items (disjoint queries) and zero-shot baseline items of one task."""

    test: list[Item]
    dev: list[Item]
    baseline: list[Item]


def _check_counts(task: Task, n_shots: int, n_dummies: int, **sizes: int) -> None:
    for what, value in {"n_shots": n_shots, "n_dummies": n_dummies, **sizes}.items():
        if value < 0:
            raise ValueError(f"{what} must be >= 0, got {value}")
    needed = 1 + n_shots + n_dummies
    if len(task) < needed:
        raise ValueError(
            f"task {task.name!r} has {len(task)} pairs, but each item needs {needed} distinct inputs "
            f"(1 query + {n_shots} demonstrations + {n_dummies} dummy queries): lower n_shots or n_dummies"
        )


def _draw_queries(pool: list[str], n: int, rng: random.Random, repeats: bool, shortage: str) -> list[str]:
    if n <= len(pool):
        return rng.sample(pool, n)
    if not repeats:
        raise ValueError(shortage)
    queries: list[str] = []
    while len(queries) < n:
        queries += rng.sample(pool, min(len(pool), n - len(queries)))
    return queries


def _build_item(task: Task, query: str, rng: random.Random, n_shots: int, n_dummies: int) -> Item:
    others = [x for x in task.inputs if x != query]
    chosen = rng.sample(others, n_shots + n_dummies)
    demos = tuple((x, task.canonical(x)) for x in chosen[:n_shots])
    return Item(query=query, answers=task.answers(query), demos=demos, dummies=tuple(chosen[n_shots:]))


def sample_items(
    task: Task,
    n: int,
    seed: int,
    n_shots: int = PAPER.n_shots,
    n_dummies: int = PAPER.n_dummies,
    exclude: Iterable[str] = (),
    allow_repeats: bool = True,
) -> list[Item]:
    """`n` items with distinct queries not in `exclude` (demonstrations may still use those inputs).

    When the pool is smaller than `n`, queries recur as evenly as possible (each with fresh
    demonstrations), as the paper does for its 25-letter tasks; with `allow_repeats=False`, ValueError.
    """
    _check_counts(task, n_shots, n_dummies, n=n)
    excluded = set(exclude)
    pool = [x for x in task.inputs if x not in excluded]
    if n and not pool:
        raise ValueError(f"task {task.name!r}: all {len(task)} inputs are excluded; nothing left to query")
    rng = random.Random(seed)
    shortage = (
        f"task {task.name!r} has {len(pool)} pairs available as queries, but {n} distinct queries are needed: "
        "lower n or pass allow_repeats=True"
    )
    queries = _draw_queries(pool, n, rng, allow_repeats, shortage)
    return [_build_item(task, query, rng, n_shots, n_dummies) for query in queries]


def _split_pools(task: Task, shuffled: list[str], n_test: int, n_dev: int,
                 repeats: bool) -> tuple[list[str], list[str]]:
    if n_test + n_dev <= len(shuffled):
        return shuffled[:n_test], shuffled[n_test : n_test + n_dev]
    if not repeats or len(shuffled) < (n_test > 0) + (n_dev > 0):
        raise ValueError(
            f"task {task.name!r} has {len(shuffled)} pairs, but {n_test + n_dev} distinct queries are needed "
            f"for {n_test} test + {n_dev} dev items: lower n_test/n_dev or pass allow_repeats=True"
        )
    cut = len(shuffled) * n_test // (n_test + n_dev)
    cut = min(max(cut, 1 if n_test else 0), len(shuffled) - (1 if n_dev else 0))
    return shuffled[:cut], shuffled[cut:]


def sample_splits(
    task: Task,
    seed: int = 0,
    n_test: int = PAPER.n_test,
    n_dev: int = PAPER.n_dev,
    n_baseline: int = PAPER.n_baseline,
    n_shots: int = PAPER.n_shots,
    n_dummies: int = PAPER.n_dummies,
    allow_repeats: bool = True,
) -> Splits:
    """The paper's three item sets: test and dev (no query in common) and zero-shot baseline items.

    Baseline items have no demonstrations and no dummies; their queries come from the whole task.
    A task with fewer pairs than queries needed recurs queries (each with fresh demonstrations; test
    and dev still share none), whatever its category, unless `allow_repeats=False`.
    """
    _check_counts(task, n_shots, n_dummies, n_test=n_test, n_dev=n_dev, n_baseline=n_baseline)
    rng = random.Random(seed)
    shuffled = rng.sample(task.inputs, len(task))
    test_pool, dev_pool = _split_pools(task, shuffled, n_test, n_dev, allow_repeats)
    test = [_build_item(task, q, rng, n_shots, n_dummies)
            for q in _draw_queries(test_pool, n_test, rng, allow_repeats, "")]
    dev = [_build_item(task, q, rng, n_shots, n_dummies)
           for q in _draw_queries(dev_pool, n_dev, rng, allow_repeats, "")]
    shortage = (
        f"task {task.name!r} has {len(task)} pairs, but {n_baseline} distinct baseline queries are needed: "
        "lower n_baseline or pass allow_repeats=True"
    )
    baseline_queries = _draw_queries(task.inputs, n_baseline, rng, allow_repeats, shortage)
    baseline = [_build_item(task, q, rng, 0, 0) for q in baseline_queries]
    return Splits(test=test, dev=dev, baseline=baseline)
