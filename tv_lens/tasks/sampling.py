"""Every item is built here: a query, its answers, its demonstrations and dummy queries, sampled
with a seed (the paper's splits, contexts for θ, the conflicting and function-vector items).

Everything is drawn with `random.Random(seed)` from sorted input lists, so the same seed gives the
same items in every Python process (no set iteration order, no `hash()`).
"""

from __future__ import annotations

import random
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, replace

from tv_lens.errors import TvLensError
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
            raise TvLensError(f"{what} must be >= 0, got {value}")
    needed = 1 + n_shots + n_dummies
    if len(task) < needed:
        raise TvLensError(
            f"task {task.name!r} has {len(task)} pairs, but each item needs {needed} distinct inputs "
            f"(1 query + {n_shots} demonstrations + {n_dummies} dummy queries): lower n_shots or n_dummies"
        )


def draw_queries(pool: Sequence[str], n: int, rng: random.Random, shortage: str | None = None) -> list[str]:
    """`n` queries drawn from `pool`: distinct when it holds enough, else shuffled passes over it (a query
    recurs only once every one has been used); with a `shortage` message, that TvLensError instead."""
    if n <= len(pool):
        return rng.sample(pool, n)
    if shortage is not None:
        raise TvLensError(shortage)
    if not pool:
        raise TvLensError(f"{n} queries are needed but there is no input to draw them from: add pairs to the task")
    queries: list[str] = []
    while len(queries) < n:
        queries += rng.sample(pool, min(len(pool), n - len(queries)))
    return queries


def items_for(task: Task, queries: Iterable[str], rng: random.Random, n_shots: int, n_dummies: int = 0,
              pool: Sequence[str] | None = None) -> list[Item]:
    """An item of `task` for each query: `n_shots` demonstrations, then `n_dummies` dummy queries,
    distinct inputs drawn with `rng` from `pool` (default: the task's inputs) less the query."""
    items = []
    for query in queries:
        others = [x for x in (task.inputs if pool is None else pool) if x != query]
        if len(others) < n_shots + n_dummies:
            raise TvLensError(f"task {task.name!r} has {len(others)} inputs to draw from besides the query, but "
                              f"{n_shots} demonstrations and {n_dummies} dummy queries are needed: "
                              "lower n_shots or n_dummies, or add pairs to the task")
        chosen = rng.sample(others, n_shots + n_dummies)
        items.append(Item(query=query, answers=task.answers(query), demos=_demonstrations(task, chosen[:n_shots]),
                          dummies=tuple(chosen[n_shots:])))
    return items


def context_item(demos: Iterable[tuple[str, str]], dummies: Sequence[str]) -> Item:
    """An item to learn θ from only: demonstrations and dummy queries, no query of its own to answer
    (its query is the first dummy, its answers none)."""
    return Item(query=dummies[0], answers=(), demos=tuple((x, y) for x, y in demos), dummies=tuple(dummies))


def shuffle_labels(item: Item, rng: random.Random) -> Item:
    """The item with its demonstrations' outputs shuffled among them (inputs and format kept; a
    demonstration may keep its own output by chance)."""
    outputs = [y for _, y in item.demos]
    rng.shuffle(outputs)
    return replace(item, demos=tuple((x, y) for (x, _), y in zip(item.demos, outputs)))


def _demonstrations(task: Task, inputs: Iterable[str]) -> tuple[tuple[str, str], ...]:
    return tuple((x, task.canonical(x)) for x in inputs)


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
    demonstrations), as the paper does for its 25-letter tasks; with `allow_repeats=False`, TvLensError.
    """
    _check_counts(task, n_shots, n_dummies, n=n)
    excluded = set(exclude)
    pool = [x for x in task.inputs if x not in excluded]
    if n and not pool:
        raise TvLensError(f"task {task.name!r}: all {len(task)} inputs are excluded; nothing left to query: "
                          "exclude fewer")
    rng = random.Random(seed)
    shortage = (
        f"task {task.name!r} has {len(pool)} pairs available as queries, but {n} distinct queries are needed: "
        "lower n or pass allow_repeats=True"
    )
    queries = draw_queries(pool, n, rng, None if allow_repeats else shortage)
    return items_for(task, queries, rng, n_shots, n_dummies)


def sample_contexts(task: Task, k: int, seed: int, *, n_shots: int = PAPER.n_shots, n_dummies: int = PAPER.n_dummies,
                    exclude: Collection[str] = ()) -> list[Item]:
    """`k` demonstration contexts (`context_item`s): distinct inputs for the demonstrations and dummy
    queries of each, drawn with `random.Random(seed)` from the task's sorted inputs less `exclude`."""
    excluded = set(exclude)
    pool = [x for x in task.inputs if x not in excluded]
    needed = n_shots + n_dummies
    if n_dummies < 1 or n_shots < 0:
        raise TvLensError(f"a context needs n_shots >= 0 and n_dummies >= 1, got {n_shots} and {n_dummies}")
    if len(pool) < needed:
        raise TvLensError(f"task {task.name!r} has {len(pool)} usable pairs, but a context needs {needed} "
                          f"({n_shots} demonstrations + {n_dummies} dummy queries): "
                          "use fewer shots or add pairs to the task")
    rng = random.Random(seed)
    contexts = []
    for _ in range(k):
        chosen = rng.sample(pool, needed)
        contexts.append(context_item(_demonstrations(task, chosen[:n_shots]), chosen[n_shots:]))
    return contexts


def _split_pools(task: Task, shuffled: list[str], n_test: int, n_dev: int,
                 repeats: bool) -> tuple[list[str], list[str]]:
    if n_test + n_dev <= len(shuffled):
        return shuffled[:n_test], shuffled[n_test : n_test + n_dev]
    if not repeats or len(shuffled) < (n_test > 0) + (n_dev > 0):
        raise TvLensError(
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

    Args:
        task: the task to sample from (filtered for a tokenizer first, as `evaluate` does).
        seed: seed of every draw; the same seed gives the same items in every process.
        n_test: test items, each with `n_shots` demonstrations and `n_dummies` dummy queries.
        n_dev: dev items for the layer sweep, built like the test items.
        n_baseline: bare zero-shot queries.
        n_shots: demonstrations per item, drawn from the task without the item's query.
        n_dummies: dummy queries per item, distinct from the query and the demonstrations' inputs.
        allow_repeats: let queries recur when the task is too small; False makes that an error.

    Returns:
        `Splits(test, dev, baseline)`, lists of `Item`.

    Raises:
        TvLensError: a size the task cannot supply (one line: what is needed, what is available,
            what to lower).
    """
    _check_counts(task, n_shots, n_dummies, n_test=n_test, n_dev=n_dev, n_baseline=n_baseline)
    rng = random.Random(seed)
    shuffled = rng.sample(task.inputs, len(task))
    test_pool, dev_pool = _split_pools(task, shuffled, n_test, n_dev, allow_repeats)
    test = items_for(task, draw_queries(test_pool, n_test, rng), rng, n_shots, n_dummies)
    dev = items_for(task, draw_queries(dev_pool, n_dev, rng), rng, n_shots, n_dummies)
    shortage = (
        f"task {task.name!r} has {len(task)} pairs, but {n_baseline} distinct baseline queries are needed: "
        "lower n_baseline or pass allow_repeats=True"
    )
    baseline_queries = draw_queries(task.inputs, n_baseline, rng, None if allow_repeats else shortage)
    baseline = items_for(task, baseline_queries, rng, n_shots=0)
    return Splits(test=test, dev=dev, baseline=baseline)
