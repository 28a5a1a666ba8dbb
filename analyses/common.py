"""What every analysis shares: task specs, the filtered task a model sees, the command line,
progress lines and the outcome of a run."""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from torch import Tensor

from tv_lens import progress
from tv_lens.cli.options import (
    Parser,
    add_model_options,
    add_run_options,
    add_shard_option,
    apply_run_options,
    placement,
)
from tv_lens.codec import Record
from tv_lens.files import check_writable_folder, safe_name
from tv_lens.progress import bar
from tv_lens.report.tables import as_text
from tv_lens.runs.records import Results
from tv_lens.runs.store import Shard, Store, Unit
from tv_lens.tasks import Task, list_tasks, resolve_task
from tv_lens.tasks.prompts import PromptFormat, PromptTextError, check_pairs
from tv_lens.tasks.texts import escape_controls

Progress = Callable[[str], None]


@dataclass
class Outcome:
    """What an analysis run produced: its results, where they are, and which units were computed
    now or reused from an earlier (interrupted) run. A shard's run assembles no results (None):
    the final run without a shard does."""

    results: Results | None
    path: Path | None
    computed: list[str] = field(default_factory=list)
    reused: list[str] = field(default_factory=list)


def say(message: str) -> None:
    """A progress line on stdout (drawn above any progress bar)."""
    progress.say(message)


def show(outcome: Outcome) -> int:
    """Print an analysis's tables and where its results went (or, for a shard, what it computed);
    the exit status of its command."""
    if outcome.results is None:
        say(f"shard done: computed {len(outcome.computed)} unit(s), reused {len(outcome.reused)}; "
            f"run again without --shard once every shard is done to assemble the results")
        return 0
    say(as_text(outcome.results))
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
    """runs/<model>[-quick]: a run directory named after the model (a local path by the name of the folder it
    resolves to, so `DIR/sub/..` gives runs/DIR), always one folder inside runs/."""
    path = Path(model_spec).expanduser()
    name = path.resolve().name if path.exists() else path.name
    return Path("runs") / (safe_name(name or model_spec) + ("-quick" if quick else ""))


def add_run_arguments(p: argparse.ArgumentParser, shards: bool = True) -> None:
    """--out, --seed and (with `shards`) --shard: where a run goes and which share of it this process computes."""
    p.add_argument("--out", type=Path, help="run directory (default runs/<model>)")
    p.add_argument("--seed", type=int, default=0)
    if shards:
        add_shard_option(p)


def check_run_arguments(args: argparse.Namespace, out: Path) -> Shard | None:
    """Refuse a bad --shard or an unusable run directory before the model loads; the shard."""
    shard = Shard.parse(args.shard) if getattr(args, "shard", None) else None
    check_writable_folder(out)
    return shard


def parser(description: str, tasks: bool = True, shards: bool = True,
           prog: str | None = None) -> argparse.ArgumentParser:
    """The options every analysis takes: model, run directory, seed, and (with `tasks`) --tasks and
    (with `shards`, for analyses with units of their own) --shard; errors in one line."""
    p = Parser(prog=prog, description=description)
    add_run_arguments(p, shards)
    if tasks:
        p.add_argument("--tasks", nargs="+", help="task names or task files (default: the paper's 18)")
    add_run_options(p)
    add_model_options(p)
    return p


def load(args: argparse.Namespace):
    """The model named on the command line, the run directory (defaulted from the model) and the
    shard, after checking the run directory and the shard before the model loads."""
    from tv_lens.models.loading import load_model

    apply_run_options(args)
    out = args.out or default_out(args.model)
    shard = check_run_arguments(args, out)
    say(f"loading {args.model} ...")
    return load_model(args.model, **placement(args)), out, shard


def run_command(argv: list[str] | None, doc: str, options: Sequence[Callable[[argparse.ArgumentParser], None]],
                start: Callable[[object, Path, Shard | None, argparse.Namespace], Outcome],
                tasks: bool = True, shards: bool = True,
                check: Callable[[argparse.Namespace], None] | None = None) -> int:
    """An analysis's command (described by the first line of `doc`): the options of `parser` and those
    each of `options` adds, the tasks resolved and `check(args)` run before the model loads, then
    `start(model, out, shard, args)` run and its outcome shown. A bad argument or input ends as one
    line on stderr (exit status 2), as in `tv-lens`; so does each warning."""
    p = parser(doc.splitlines()[0], tasks, shards, prog=f"python -m {start.__module__}")
    for add in options:
        add(p)
    args = p.parse(argv)
    if args is None:  # a bad argument, said in one line
        return 2
    warnings.showwarning = lambda message, *_: print(f"{p.prog}: warning: {escape_controls(str(message))}",
                                                     file=sys.stderr)
    try:
        if tasks and args.tasks:
            args.tasks = resolve_tasks(args.tasks)  # an unknown task or a bad task file fails before the model loads
        if check:
            check(args)
        model, out, shard = load(args)
        return show(start(model, out, shard, args))
    except (ValueError, OSError, FloatingPointError) as err:
        print(f"{p.prog}: error: {escape_controls(str(err))}", file=sys.stderr)
        return 2


def task_units(store: Store, tasks: Sequence[Task], compute: Callable[[Task], tuple[Record, dict[str, Tensor]]],
               describe: Callable[[Record, dict[str, Tensor]], str], needs: Sequence[str],
               shard: Shard | None = None) -> list[Unit]:
    """One unit per task in `store` (with a `shard`, only for its share of the tasks): reused, or
    computed by `compute(task)` -> (result, tensors) with one progress line from `describe`."""
    names = [t.name for t in tasks]
    mine = set(shard.share(names) if shard else names)
    units = []
    for i, task in enumerate(bar(tasks, store.analysis.replace("_", " "), unit="task"), 1):
        if task.name not in mine:
            continue

        def timed(task: Task = task, i: int = i) -> tuple[Record, dict[str, Tensor]]:
            start = time.perf_counter()
            result, tensors = compute(task)
            store.progress(f"[{store.analysis}] {i}/{len(tasks)} {task.name}: {describe(result, tensors)} "
                           f"in {time.perf_counter() - start:.1f} s")
            return result, tensors

        units.append(store.get(task.name, timed, needs=needs, identity=task.digest))
    return units


def usable_tasks(model, tasks: Sequence[Task], progress: Progress = say) -> list[Task]:
    """`tasks` less those the paper's single-token filter leaves empty for this model's tokenizer and
    those with a text the arrow format cannot hold (each skipped with one line); an error if none is left."""
    kept = []
    for task in tasks:
        try:
            check_pairs(task, PromptFormat())
        except PromptTextError as err:
            progress(f"[reproduce] {task.name} skipped: {err}")
            continue
        report = task.filter_report(model.tokenizer)
        if report.applied and report.kept == 0:
            progress(f"[reproduce] {task.name} skipped: none of its {report.total} outputs is a single token "
                     f"for this model's tokenizer, and the paper's protocol scores single-token outputs only")
        else:
            kept.append(task)
    if not kept:
        raise ValueError("no task has single-token outputs for this model's tokenizer: choose other tasks")
    return kept
