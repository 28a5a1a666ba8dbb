"""Every experiment of the paper on one model, resumable, ending with a table in the terminal
(`tv-lens reproduce`, defined in `analyses/cli.py`)."""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import clusters, conflicting_tasks, layer_sweep, main_table, top_tokens
from .common import Outcome, Progress, default_out, resolve_tasks, say


@dataclass(frozen=True)
class Protocol:
    """Sizes of every experiment, and the tasks (None: the paper's 18)."""

    main: main_table.MainTableSettings = field(default_factory=main_table.MainTableSettings)
    conflict: conflicting_tasks.ConflictSettings = field(default_factory=conflicting_tasks.ConflictSettings)
    cluster: clusters.ClusterSettings = field(default_factory=clusters.ClusterSettings)
    k: int = 20
    tasks: tuple[str, ...] | None = None


PAPER = Protocol()
QUICK = Protocol(
    main=main_table.MainTableSettings(n_baseline=8, n_dev=8, n_test=8),
    conflict=conflicting_tasks.ConflictSettings(n_items=8),
    cluster=clusters.ClusterSettings(n_per_task=8),
    k=10,
    tasks=("next_letter", "to_upper", "list_last", "list_first", "antonyms"),
)


def reproduce(model, out, tasks=None, protocol: Protocol = PAPER, seed: int = 0,
              progress: Progress = say) -> dict[str, Outcome]:
    """Main table, layer sweep, conflicting tasks (the paper's pairs among `tasks`), top tokens and
    clusters, in that order, each reusing the main table's best layers."""
    tasks = resolve_tasks(tasks or protocol.tasks)
    names = {t.name for t in tasks}
    main = main_table.run(model, out, tasks, protocol.main, seed, progress)
    layers = main_table.layers_of(main.results["tasks"])
    outcomes = {"main_table": main,
                "layer_sweep": layer_sweep.run(model, out, tasks, protocol.main, seed, progress, main.results)}
    pairs = [p for p in conflicting_tasks.PAPER_PAIRS if set(p) <= names]
    if pairs:
        outcomes["conflicting_tasks"] = conflicting_tasks.run(
            model, out, pairs, protocol.conflict, seed, main_settings=protocol.main, best_layers=layers,
            progress=progress)
    else:
        progress("[conflicting_tasks] skipped: no pair of the paper has both tasks in this run")
    outcomes["top_tokens"] = top_tokens.run(model, out, tasks, protocol.main, seed, protocol.k, progress, main.results)
    if len(tasks) >= 2:
        outcomes["clusters"] = clusters.run(model, out, tasks, protocol.cluster, seed, main_settings=protocol.main,
                                            best_layers=layers, progress=progress)
    else:
        progress("[clusters] skipped: clustering needs at least two tasks")
    return outcomes


FORMATTERS = {"main_table": main_table.format_table, "layer_sweep": layer_sweep.format_table,
              "conflicting_tasks": conflicting_tasks.format_table, "top_tokens": top_tokens.format_table,
              "clusters": clusters.format_table}


def format_report(outcomes: dict[str, Outcome]) -> str:
    """Every analysis's table, one after another."""
    parts = []
    for name, outcome in outcomes.items():
        parts += [f"== {name.replace('_', ' ')} ==", FORMATTERS[name](outcome.results), ""]
    return "\n".join(parts)


def run_from_args(args: argparse.Namespace) -> Path:
    """Load the model, reproduce, print the tables and where the results are; the run directory."""
    from tv_lens.models import load_model

    start = time.perf_counter()
    out = args.out or default_out(args.model, args.quick)
    protocol = QUICK if args.quick else PAPER
    tasks = resolve_tasks(args.tasks or protocol.tasks)  # bad task names fail before the model loads
    say(f"loading {args.model} ...")
    model = load_model(args.model)
    outcomes = reproduce(model, out, tasks, protocol, args.seed)
    say("")
    say(format_report(outcomes))
    say(f"results in {out}/ ({time.perf_counter() - start:.0f} s)")
    return out
