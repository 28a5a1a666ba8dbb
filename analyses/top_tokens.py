"""Experiment 4, top tokens: θ averaged over a task's test items, at its best layer, projected
through the final norm and the unembedding. Also θ minus the mean θ over all tasks at that layer:
on small models the raw projection is dominated by a component every task shares.

    python -m analyses.top_tokens --model tiny-llama --tasks next_letter to_upper --out runs/x
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import asdict

import torch

from tv_lens.analysis.lens import top_tokens
from tv_lens.cli.options import at_least
from tv_lens.runs.records import TaskTokens
from tv_lens.runs.store import Store
from tv_lens.settings import PAPER, Settings
from tv_lens.tasks import Task

from . import main_table
from .common import Outcome, Progress, resolve_tasks, run_command, say

ANALYSIS = "top_tokens"
TOP_K = 20  # tokens listed per task


def run(model, out, tasks: Sequence[str | Task] | None = None,
        settings: Settings = PAPER, seed: int = 0, k: int = TOP_K,
        progress: Progress = say) -> Outcome:
    """Top-`k` tokens of each task's mean test θ at its best layer, raw and centred, both taken from
    the main table's units in `out` (computed there first if missing)."""
    units, _ = main_table.task_results(model, out, resolve_tasks(tasks), settings, seed, progress)
    centre = torch.stack([u.tensors[main_table.MEAN_THETA] for u in units]).mean(0)
    rows = []
    for unit in units:
        r, theta = unit.result, unit.tensors[main_table.MEAN_THETA]
        rows.append(TaskTokens(r.task, r.category, r.best_layer, len(r.test_items),
                               raw=top_tokens(model, theta, k, layer=r.best_layer),
                               centred=top_tokens(model, theta, k, layer=r.best_layer, centre=centre[r.best_layer])))
    store = Store.open(out, ANALYSIS, model, {"main_table": asdict(settings)}, seed, progress)
    written = store.write_results(units, k=k, tasks=rows)
    return Outcome(written, store.results_path)


def main(argv: list[str] | None = None) -> int:
    def add_k(p: argparse.ArgumentParser) -> None:
        p.add_argument("-k", type=at_least(1), default=TOP_K, help=f"tokens per task (default {TOP_K})")

    return run_command(argv, __doc__, (add_k, main_table.add_settings_arguments), lambda model, out, _, args: run(
        model, out, args.tasks, main_table.settings_from_args(args), args.seed, args.k), shards=False)


if __name__ == "__main__":
    sys.exit(main())
