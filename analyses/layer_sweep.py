"""Experiment 2, the layer sweep: task-vector dev accuracy at each layer, per task, and its mean
and spread over tasks. Read from the main table's results (each task's dev curve), never recomputed.

    python -m analyses.layer_sweep --model tiny-llama --tasks next_letter to_upper --out runs/x
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import asdict

from tv_lens.runs.records import LayerCurve, MainTable, sweep_statistics
from tv_lens.runs.store import Store
from tv_lens.settings import PAPER, Settings
from tv_lens.tasks import Task

from . import main_table
from .common import Outcome, Progress, run_command, say

ANALYSIS = "layer_sweep"


def curves(main_results: MainTable) -> dict:
    """The body of the layer sweep: per-task dev accuracy by layer and, per layer, its mean,
    standard deviation, min and max over tasks."""
    tasks = [LayerCurve.of(r) for r in main_results.tasks]
    return {"n_layers": main_results.model.n_layers, "tasks": tasks, **sweep_statistics(tasks)}


def run(model, out, tasks: Sequence[str | Task] | None = None,
        settings: Settings = PAPER, seed: int = 0,
        progress: Progress = say, main_results: MainTable | None = None) -> Outcome:
    """The layer sweep from `main_results` (default: run or reuse the main table in `out`)."""
    if main_results is None:
        main_results = main_table.run(model, out, tasks, settings, seed, progress).results
    store = Store.open(out, ANALYSIS, model, asdict(settings), seed)
    written = store.write_results(main_results.sources, **curves(main_results))
    return Outcome(written, store.results_path)


def main(argv: list[str] | None = None) -> int:
    return run_command(argv, __doc__, (main_table.add_settings_arguments,), lambda model, out, _, args: run(
        model, out, args.tasks, main_table.settings_from_args(args), args.seed), shards=False)


if __name__ == "__main__":
    sys.exit(main())
