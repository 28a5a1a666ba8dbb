"""What every analysis shares: task specs, the filtered task a model sees, the command line,
progress lines and the outcome of a run."""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tv_lens.cli_options import DEFAULT_MODEL, add_run_options, apply_run_options
from tv_lens.tasks import Task, list_tasks, resolve_task

Progress = Callable[[str], None]


@dataclass
class Outcome:
    """What an analysis run produced: its results, where they are, and which units were computed
    now or reused from an earlier (interrupted) run."""

    results: dict
    path: Path
    computed: list[str] = field(default_factory=list)
    reused: list[str] = field(default_factory=list)


def say(message: str) -> None:
    print(message, flush=True)


def show(outcome: Outcome, format_table: Callable[[dict], str]) -> int:
    """Print an analysis's table and where its results went; the exit status of its command."""
    say(format_table(outcome.results))
    say(f"wrote {outcome.path}")
    return 0


def report_reused(analysis: str, reused: Sequence[str], progress: Progress) -> None:
    """One line naming the units taken from an earlier run instead of recomputed."""
    if reused:
        progress(f"[{analysis}] {len(reused)} finished earlier, reused: {', '.join(reused)}")


def resolve_tasks(specs: Sequence[str | Task] | None) -> list[Task]:
    """The tasks to run: the given ones, or the paper's 18 (and any registered user tasks)."""
    tasks = [resolve_task(s) for s in (specs or list_tasks())]
    names = [t.name for t in tasks]
    if len(set(names)) != len(names):
        raise ValueError(f"task names must be distinct, got {', '.join(names)}")
    return tasks


def default_out(model_spec: str, quick: bool = False) -> Path:
    """runs/<model>[-quick]: a run directory named after the model."""
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", Path(model_spec).name or model_spec)
    return Path("runs") / (name + ("-quick" if quick else ""))


def parser(description: str, tasks: bool = True) -> argparse.ArgumentParser:
    """The options every analysis takes: model, run directory, seed, and (with `tasks`) --tasks."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--model", default=DEFAULT_MODEL,
                   help=f"embedded name, tiny test model, HF id, local dir or .gguf (default {DEFAULT_MODEL})")
    p.add_argument("--out", type=Path, help="run directory (default runs/<model>)")
    if tasks:
        p.add_argument("--tasks", nargs="+", help="task names or task files (default: the paper's 18)")
    p.add_argument("--seed", type=int, default=0, help="seed of the item sampling (default 0, the README's numbers)")
    add_run_options(p)
    return p


def load(args: argparse.Namespace):
    """The model named on the command line, and the run directory (defaulted from the model)."""
    from tv_lens.models import load_model

    apply_run_options(args)
    say(f"loading {args.model} ...")
    model = load_model(args.model)
    return model, args.out or default_out(args.model)
