"""The paper's single-token output filter, with its leading-space prompt variant.

An output is kept when it is ONE token as it appears in the prompt, right after the arrow:
variant A `example:{x}->{y}`, variant B `example: {x}-> {y}`. B is used when it keeps at
least 70% as many pairs as A.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tv_lens.tasks.task import Task

ARROW = "->"
LEADING_SPACE_MIN_RATIO = 0.7


@dataclass(frozen=True)
class FilterReport:
    """Pair counts of one task for one tokenizer: total, single-token under A and B, and the choice."""

    task: str
    total: int
    single_token_a: int
    single_token_b: int
    applied: bool
    leading_space: bool
    kept: int


def _token_ids(tokenizer: Any, texts: Sequence[str]) -> list[list[int]]:
    return tokenizer(list(texts), add_special_tokens=False)["input_ids"]


def tokens_after_arrow(tokenizer: Any, outputs: Sequence[str], leading_space: bool) -> list[list[int] | None]:
    """Token ids each output gets right after `->` in context; None where it merges with the arrow."""
    prefix = _token_ids(tokenizer, [ARROW])[0]
    space = " " if leading_space else ""
    rows = _token_ids(tokenizer, [f"{ARROW}{space}{output}" for output in outputs])
    return [row[len(prefix):] if row[: len(prefix)] == prefix else None for row in rows]


def single_token_mask(tokenizer: Any, outputs: Sequence[str], leading_space: bool) -> list[bool]:
    """For each output, whether it is exactly one token when written after the arrow."""
    return [ids is not None and len(ids) == 1 for ids in tokens_after_arrow(tokenizer, outputs, leading_space)]


def _apply(task: Task, tokenizer: Any, leading_space: bool | None = None
           ) -> tuple[FilterReport, dict[str, tuple[str, ...]]]:
    inputs = list(task.pairs)
    canonical = [task.canonical(x) for x in inputs]
    mask_a = single_token_mask(tokenizer, canonical, leading_space=False)
    mask_b = single_token_mask(tokenizer, canonical, leading_space=True)
    count_a, count_b = sum(mask_a), sum(mask_b)
    if not task.single_token_filter:
        return FilterReport(task.name, len(task), count_a, count_b, False, False, len(task)), dict(task.pairs)
    if leading_space is None:
        leading_space = count_b >= LEADING_SPACE_MIN_RATIO * count_a
    mask = mask_b if leading_space else mask_a
    kept = {x: task.pairs[x] for x, keep in zip(inputs, mask) if keep}
    return FilterReport(task.name, len(task), count_a, count_b, True, leading_space, len(kept)), kept


def filter_report(task: Task, tokenizer: Any) -> FilterReport:
    """Pair counts of `task` before and after the single-token filter for `tokenizer`."""
    return _apply(task, tokenizer)[0]


def filter_task(task: Task, tokenizer: Any, leading_space: bool | None = None) -> tuple[Task, FilterReport]:
    """Apply the single-token filter to `task` (if it uses one) and report the counts; the variant
    is the one given by `leading_space`, else chosen by the counts.

    Tasks without the filter (knowledge, algorithmic) come back unchanged in variant A;
    their single-token counts are still reported.
    """
    report, kept = _apply(task, tokenizer, leading_space)
    if not kept:
        raise ValueError(f"task {task.name!r}: no output is a single token for this tokenizer; "
                         "use single_token_filter=False or other outputs")
    return task.with_pairs(kept, leading_space=report.leading_space), report
