"""The paper's protocol for reading a task with a tokenizer, one for built-in and loaded tasks alike.

An answer counts as single-token when it is ONE token as it appears in the prompt, right after the
arrow: variant A `example:{x}->{y}`, variant B `example: {x}-> {y}`. For every task, filtered or not,
B is used when it keeps at least 70% as many single-token answers as A (the paper's rule). The
single-token filter then keeps the pairs whose canonical answer is one token in the chosen variant.
First-token predictions scored by exact match against answers most of which are several tokens
could almost never be right, so that combination is refused.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

ARROW = "->"
LEADING_SPACE_MIN_RATIO = 0.7
WHOLE_ANSWER_SCORERS = frozenset({"exact", "any_of"})


@dataclass(frozen=True)
class FilterReport:
    """Pair counts of one task for one tokenizer: total, single-token under A and B, the variant
    chosen, whether the filter applied and what it kept."""

    task: str
    total: int
    single_token_a: int
    single_token_b: int
    applied: bool
    leading_space: bool
    kept: int

    @property
    def variant(self) -> str:
        """"A" (`x->y`) or "B" (` x-> y`)."""
        return "B" if self.leading_space else "A"

    @property
    def single_token(self) -> int:
        """Single-token answers in the chosen variant."""
        return self.single_token_b if self.leading_space else self.single_token_a


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


def prefers_leading_space(single_token_a: int, single_token_b: int) -> bool:
    """The paper's rule: variant B when it keeps at least 70% as many single-token answers as A."""
    return single_token_b > 0 and single_token_b >= LEADING_SPACE_MIN_RATIO * single_token_a


def filter_pairs(name: str, pairs: Mapping[str, tuple[str, ...]], tokenizer: Any, *, leading_space: bool | None,
                 single_token_filter: bool) -> tuple[FilterReport, dict[str, tuple[str, ...]]]:
    """The counts of a task's pairs (canonical answer first) for `tokenizer`, and the pairs the filter keeps: the
    prompt variant chosen by the paper's rule unless `leading_space` fixes it."""
    inputs = list(pairs)
    canonical = [pairs[x][0] for x in inputs]
    mask_a = single_token_mask(tokenizer, canonical, leading_space=False)
    mask_b = single_token_mask(tokenizer, canonical, leading_space=True)
    count_a, count_b = sum(mask_a), sum(mask_b)
    if leading_space is None:
        leading_space = prefers_leading_space(count_a, count_b)
    if single_token_filter:
        mask = mask_b if leading_space else mask_a
        kept = {x: pairs[x] for x, keep in zip(inputs, mask) if keep}
    else:
        kept = dict(pairs)
    return FilterReport(name, len(pairs), count_a, count_b, single_token_filter, leading_space, len(kept)), kept


def protocol_problem(report: FilterReport, scoring: str) -> str | None:
    """Why a task scored by `scoring` cannot be read as `report` says, or None if it can.

    Refused: first-token predictions scored against whole answers (exact scoring) with the filter
    off while most answers are several tokens, and a filter that keeps nothing.
    """
    fixes = ("score by prefix (scoring='prefix') or score whole answers by generation "
             "(tv.generate with tv.score_generation)")
    if report.applied and not report.kept:
        return (f"task {report.task!r}: no answer is a single token for this tokenizer in prompt variant "
                f"{report.variant}, so the single-token filter leaves nothing: {fixes}")
    several = report.total - report.single_token
    if not report.applied and scoring in WHOLE_ANSWER_SCORERS and 2 * several > report.total:
        return (f"task {report.task!r}: {several} of {report.total} answers are several tokens for this tokenizer, "
                f"but the first predicted token would be scored by exact match: keep the single-token filter "
                f"(single_token_filter=True), {fixes}")
    return None
