"""The `tv-lens tasks` table: every registered task with its pair counts, filtered for a tokenizer."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from tv_lens.tasks.filters import filter_report
from tv_lens.tasks.registry import get_task, list_tasks


@dataclass(frozen=True)
class TaskRow:
    """One task's line: counts before the filter and, given a tokenizer, single-token counts and kept pairs.

    `variant` is "A" (`x->y`) or "B" (` x-> y`); `filtered` says whether the single-token filter applies.
    """

    name: str
    category: str
    scoring: str
    pairs: int
    description: str
    single_token_a: int | None = None
    single_token_b: int | None = None
    filtered: bool | None = None
    variant: str | None = None
    kept: int | None = None


def task_table(tokenizer: Any | None = None) -> list[TaskRow]:
    """One row per registered task; with a tokenizer, the single-token filter's counts too."""
    rows = []
    for name in list_tasks():
        task = get_task(name)
        row = TaskRow(task.name, task.category, task.scoring, len(task), task.description)
        if tokenizer is not None:
            report = filter_report(task, tokenizer)
            row = replace(
                row,
                single_token_a=report.single_token_a,
                single_token_b=report.single_token_b,
                filtered=report.applied,
                variant="B" if report.leading_space else "A",
                kept=report.kept,
            )
        rows.append(row)
    return rows


def format_task_table(rows: list[TaskRow]) -> str:
    """Rows as an aligned text table (counts columns only when a tokenizer was given)."""
    with_counts = any(row.kept is not None for row in rows)
    header = ["task", "category", "scoring", "pairs"]
    header += ["1-tok A", "1-tok B", "filter", "variant", "kept"] if with_counts else ["description"]
    lines = [header]
    for row in rows:
        cells = [row.name, row.category, row.scoring, str(row.pairs)]
        if with_counts:
            cells += [
                str(row.single_token_a),
                str(row.single_token_b),
                "yes" if row.filtered else "no",
                row.variant or "",
                str(row.kept),
            ]
        else:
            cells.append(row.description)
        lines.append(cells)
    numeric = {3, 4, 5, 8} if with_counts else {3}
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.rjust(w) if i in numeric else cell.ljust(w)
                  for i, (cell, w) in enumerate(zip(line, widths))).rstrip()
        for line in lines
    )
