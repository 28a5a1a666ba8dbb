"""Experiment 1, the main table: zero-shot baseline / ICL / task vector per task, means per
category and overall, and TV/ICL, with 95% CIs.

    python -m analyses.main_table --model tiny-llama --tasks next_letter to_upper --out runs/x
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import asdict

from torch import Tensor

from tv_lens.cli.options import at_least
from tv_lens.runs.records import Summary
from tv_lens.runs.store import Shard, Store, Unit
from tv_lens.settings import PAPER, Settings
from tv_lens.task_vectors.evaluation import EvalResult, evaluate
from tv_lens.tasks import Task

from .common import Outcome, Progress, report_reused, resolve_tasks, run_command, say, task_units

ANALYSIS = "main_table"
MEAN_THETA = "mean_theta"


def task_result(model, task: Task, settings: Settings, seed: int) -> EvalResult:
    """`evaluate` on one task: each test item's hits included (for paired CIs), and the mean θ of
    its test items (every layer)."""
    return evaluate(model, task, seed=seed, settings=settings)


def task_results(
    model, out, tasks: Sequence[Task], settings: Settings = PAPER, seed: int = 0,
    progress: Progress = say, shard: Shard | None = None,
) -> tuple[list[Unit], Store]:
    """Each task's unit (its result, and its mean θ as tensor `mean_theta`), computed and saved now
    or reused from an earlier run into `out`; with a `shard`, only the shard's share of the tasks."""
    store = Store.open(out, ANALYSIS, model, asdict(settings), seed, progress)

    def compute(task: Task) -> tuple[EvalResult, dict[str, Tensor]]:
        done = task_result(model, task, settings, seed)
        return done, {MEAN_THETA: done.mean_theta}

    def describe(done: EvalResult, tensors: dict) -> str:
        return (f"baseline {done.baseline.value:.2f} icl {done.icl.value:.2f} "
                f"tv {done.tv.value:.2f} (layer {done.best_layer})")

    units = task_units(store, tasks, compute, describe, [MEAN_THETA], shard)
    return units, store


def best_layers(model, out, tasks: Sequence[Task], settings: Settings = PAPER,
                seed: int = 0, progress: Progress = say) -> dict[str, int]:
    """Each task's best task-vector layer from the main table (run or reused)."""
    units, _ = task_results(model, out, tasks, settings, seed, progress)
    return layers_of([u.result for u in units])


def layers_of(results: Sequence[EvalResult]) -> dict[str, int]:
    """Task name -> best layer, from main-table task results."""
    return {r.task: r.best_layer for r in results}


def summary(results: Sequence[EvalResult], seed: int = 0) -> Summary:
    """Means over all tasks and per category (in order of first appearance)."""
    return Summary.of(results, seed)


def run(model, out, tasks: Sequence[str | Task] | None = None, settings: Settings = PAPER,
        seed: int = 0, progress: Progress = say, shard: Shard | None = None) -> Outcome:
    """The main table for `tasks` (default the paper's 18), resumable, written to out/main_table/
    (by a run without `shard`; a shard only computes its share of the tasks)."""
    units, store = task_results(model, out, resolve_tasks(tasks), settings, seed, progress, shard)
    report_reused(ANALYSIS, store.reused, progress)
    if shard:
        return Outcome(None, None, store.computed, store.reused)
    results = [u.result for u in units]
    written = store.write_results(units, tasks=results, summary=summary(results, seed))
    return Outcome(written, store.results_path, store.computed, store.reused)


def add_settings_arguments(p: argparse.ArgumentParser) -> None:
    """--n-shots, --n-dummies, --n-baseline, --n-dev, --n-test (the paper's by default)."""
    for name, default in asdict(PAPER).items():
        p.add_argument("--" + name.replace("_", "-"), type=at_least(1), default=default,
                       help=f"main table: {name.replace('_', ' ')} (default {default})")


def settings_from_args(args: argparse.Namespace) -> Settings:
    return Settings(**{k: getattr(args, k) for k in asdict(PAPER)})


def main(argv: list[str] | None = None) -> int:
    return run_command(argv, __doc__, (add_settings_arguments,), lambda model, out, shard, args: run(
        model, out, args.tasks, settings_from_args(args), args.seed, shard=shard))


if __name__ == "__main__":
    sys.exit(main())
