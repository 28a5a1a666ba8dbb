"""The `tv-lens tasks` tables: registered tasks or task files, with what the protocol keeps for a tokenizer."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from os import PathLike
from typing import Any

from tv_lens.tasks.filters import protocol_problem
from tv_lens.tasks.loaders import FileCounts, load_task, read_pairs
from tv_lens.tasks.registry import get_task, list_tasks
from tv_lens.tasks.task import Task


@dataclass(frozen=True)
class TaskRow:
    """One task's line: counts before the filter and, given a tokenizer, single-token counts and kept pairs.

    `variant` is "A" (`x->y`) or "B" (` x-> y`), chosen for every task by the paper's rule;
    `filtered` says whether the single-token filter applies; `problem` is why evaluating the task
    would be refused, if it would. For a task file, `read` and `merged` count its rows.
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
    problem: str | None = None
    read: int | None = None
    merged: int | None = None


def task_row(task: Task, tokenizer: Any | None = None, counts: FileCounts | None = None) -> TaskRow:
    """The line of one task; with a tokenizer, what the protocol keeps; with a file's counts, its rows."""
    row = TaskRow(task.name, task.category, task.scoring, len(task), task.description)
    if counts is not None:
        row = replace(row, read=counts.read, merged=counts.merged)
    if tokenizer is None:
        return row
    report = task.filter_report(tokenizer)
    return replace(row, single_token_a=report.single_token_a, single_token_b=report.single_token_b,
                   filtered=report.applied, variant=report.variant, kept=report.kept,
                   problem=protocol_problem(report, task.scoring))


def task_table(tokenizer: Any | None = None) -> list[TaskRow]:
    """One row per registered task; with a tokenizer, the single-token filter's counts too."""
    return [task_row(get_task(name), tokenizer) for name in list_tasks(composition=True)]


def file_table(paths: Sequence[str | PathLike[str]], tokenizer: Any | None = None,
               scoring: str = "exact") -> list[TaskRow]:
    """One row per task file, loaded as `load_task(path, scoring=scoring)` loads it (with its warning)."""
    return [task_row(load_task(path, scoring=scoring), tokenizer, read_pairs(path)[1]) for path in paths]


def format_task_table(rows: list[TaskRow]) -> str:
    """Rows as an aligned text table (counts columns only when a tokenizer was given; rows read and
    merged, and pairs dropped by the filter, for task files), then one line per refused task."""
    with_counts = any(row.kept is not None for row in rows)
    files = any(row.read is not None for row in rows)
    header = ["task", "category", "scoring", *(["read", "merged"] if files else []), "pairs"]
    if with_counts:
        header += ["1-tok A", "1-tok B", "filter", "variant", "kept", *(["dropped"] if files else [])]
    elif not files:
        header.append("description")
    lines = [header]
    for row in rows:
        cells = [row.name, row.category, row.scoring, *([str(row.read), str(row.merged)] if files else []),
                 str(row.pairs)]
        if with_counts:
            dropped = "" if row.kept is None else str(row.pairs - row.kept)
            cells += [str(row.single_token_a), str(row.single_token_b), "yes" if row.filtered else "no",
                      row.variant or "", str(row.kept), *([dropped] if files else [])]
        elif not files:
            cells.append(row.description)
        lines.append(cells)
    text_columns = {"task", "category", "scoring", "filter", "variant", "description"}
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    table = [
        "  ".join(cell.ljust(w) if header[i] in text_columns else cell.rjust(w)
                  for i, (cell, w) in enumerate(zip(line, widths))).rstrip()
        for line in lines
    ]
    return "\n".join(table + [f"refused: {row.problem}" for row in rows if row.problem])
