"""Experiment 5, clustering: θ of many items per task (4 demonstrations) at one common layer (the
median of the tasks' best layers), embedded with t-SNE, and how well they separate by task.

    python -m analyses.clusters --model tiny-llama --tasks next_letter to_upper --out runs/x
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from jaxtyping import Float
from torch import Tensor

from tv_lens.analysis.geometry import cluster_stats, mean_pairwise_distance, tsne_2d
from tv_lens.cli.options import at_least
from tv_lens.patching.engine import token_limit
from tv_lens.patching.interventions import check_layer
from tv_lens.runs.records import Point, TaskQueries, TaskSpread
from tv_lens.runs.store import Shard, Store
from tv_lens.settings import PAPER, PAPER_4_SHOTS, AnalysisSettings, Settings
from tv_lens.task_vectors.learning import learn_items
from tv_lens.tasks import Task, sample_items
from tv_lens.tasks.prompts import PromptFormat, prompt_ready

from . import main_table
from .common import Outcome, Progress, report_reused, resolve_tasks, run_command, say, task_units

ANALYSIS = "clusters"


@dataclass(frozen=True)
class ClusterSettings(AnalysisSettings):
    """The paper's: 50 vectors per task, each from 4 demonstrations and 2 dummy queries (`sizes`)."""

    USES = ("n_shots", "n_dummies")
    n_per_task: int = 50
    sizes: Settings = PAPER_4_SHOTS


def task_thetas(model, task: Task, settings: ClusterSettings,
                seed: int) -> tuple[Float[Tensor, "n n_layers d_model"], list[str]]:
    """θ at every layer for `n_per_task` items of `task` ([n, n_layers, d_model]), and the items'
    queries; kept at every layer so that the choice of the common layer needs no new θ."""
    task = task.filtered(model.tokenizer)
    fmt = PromptFormat.for_task(task)
    task = prompt_ready(task, fmt, model.tokenizer, token_limit(model), settings.sizes.n_shots)
    items = sample_items(task, settings.n_per_task, seed, n_shots=settings.sizes.n_shots,
                         n_dummies=settings.sizes.n_dummies)
    thetas, _ = learn_items(model, items, fmt)
    return torch.stack(thetas), [i.query for i in items]


def common_layer(best_layers: dict[str, int]) -> int:
    """The median best layer (the lower one for an even number of tasks)."""
    return statistics.median_low(best_layers.values())


def run(model, out, tasks: Sequence[str | Task] | None = None, settings: ClusterSettings = ClusterSettings(),
        seed: int = 0, layer: int | None = None,
        main_settings: Settings = PAPER,
        perplexity: float = 30.0, best_layers: dict[str, int] | None = None, progress: Progress = say,
        shard: Shard | None = None) -> Outcome:
    """θ vectors of every task (with a `shard`, only of its share of the tasks, and no results) at
    `layer` (default: the median of the tasks' best layers, from `best_layers` or the main table run
    or reused in `out`)."""
    tasks = resolve_tasks(tasks)
    if len(tasks) < 2:
        raise ValueError("clustering needs at least two tasks")
    if layer is not None:
        check_layer(model, layer)
    store = Store.open(out, ANALYSIS, model, settings.record(), seed, progress)

    def compute(task: Task) -> tuple[TaskQueries, dict[str, Tensor]]:
        thetas, queries = task_thetas(model, task, settings, seed)
        return TaskQueries(queries), {"thetas": thetas}

    units = task_units(store, tasks, compute, lambda done, tensors: f"{len(done.queries)} vectors",
                       ["thetas"], shard)
    report_reused(ANALYSIS, store.reused, progress)
    if shard:
        return Outcome(None, None, store.computed, store.reused)
    if layer is None:
        layers = best_layers or main_table.best_layers(model, out, tasks, main_settings, seed, progress)
        layer = common_layer({t.name: layers[t.name] for t in tasks})
    vectors, labels, queries, rows = [], [], [], []
    for task, unit in zip(tasks, units):
        thetas = unit.tensors["thetas"][:, layer]
        vectors.append(thetas)
        labels += [task.name] * len(thetas)
        queries += unit.result.queries
        rows.append(TaskSpread(task.name, task.category, len(thetas), mean_pairwise_distance(thetas)))
    vectors = torch.cat(vectors)
    points = tsne_2d(vectors, seed=seed, perplexity=perplexity)
    written = store.write_results(
        units,
        layer=layer, perplexity=perplexity, stats=cluster_stats(vectors, labels),
        stats_centred=cluster_stats(vectors - vectors.mean(0), labels), tasks=rows,
        points=[Point(t, q, float(x), float(y)) for t, q, (x, y) in zip(labels, queries, points)])
    return Outcome(written, store.results_path, store.computed, store.reused)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--layer", type=at_least(0), help="common layer (default: median best layer of the main table)")
    p.add_argument("--n-per-task", type=at_least(1), default=ClusterSettings.n_per_task)


def main(argv: list[str] | None = None) -> int:
    return run_command(argv, __doc__, (add_arguments, main_table.add_settings_arguments),
                       lambda model, out, shard, args: run(
                           model, out, args.tasks, ClusterSettings(n_per_task=args.n_per_task), args.seed,
                           args.layer, main_table.settings_from_args(args), shard=shard))


if __name__ == "__main__":
    sys.exit(main())
