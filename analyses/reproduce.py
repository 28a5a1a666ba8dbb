"""Every experiment of the paper on one model, function vectors beside them and the composition of vectors,
resumable, ending with a table in the terminal (`tv-lens reproduce`, defined in `analyses/commands.py`)."""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tv_lens.cli.options import placement
from tv_lens.function_vectors.items import FORMATS, UnusableTask
from tv_lens.progress import counter
from tv_lens.report.tables import as_text
from tv_lens.runs.reading import Configuration
from tv_lens.runs.store import Shard
from tv_lens.settings import Settings

from . import (
    EXPERIMENTS,
    clusters,
    composition,
    conflicting_tasks,
    function_vectors,
    layer_sweep,
    main_table,
    top_tokens,
)
from .common import Outcome, Progress, check_run_arguments, default_out, resolve_tasks, say, usable_tasks


@dataclass(frozen=True)
class Protocol:
    """Sizes of every experiment (the main table's `Settings`, the others' settings holding one each,
    the top tokens listed), the function vectors' prompt formats and how many of the tasks they take
    (the first `fv_n_tasks`; None: all), and the tasks (None: the paper's 18; the composition has its own)."""

    main: Settings = field(default_factory=Settings)
    conflict: conflicting_tasks.ConflictSettings = field(default_factory=conflicting_tasks.ConflictSettings)
    cluster: clusters.ClusterSettings = field(default_factory=clusters.ClusterSettings)
    fv: function_vectors.FVSettings = field(default_factory=function_vectors.FVSettings)
    fv_formats: tuple[str, ...] = FORMATS
    fv_n_tasks: int | None = None
    composition: composition.CompositionSettings = field(default_factory=composition.CompositionSettings)
    k: int = top_tokens.TOP_K
    tasks: tuple[str, ...] | None = None


PAPER = Protocol()
QUICK = Protocol(
    main=Settings(n_baseline=2, n_dev=1, n_test=2),
    conflict=conflicting_tasks.ConflictSettings(n_items=2),
    cluster=clusters.ClusterSettings(n_per_task=2),
    fv=function_vectors.FVSettings(formulations=("residual",), rankings=("universal",), compare_all_queries=False
                                   ).but(n_shots=3, n_clean=1, n_corrupted=2, n_dev=1, n_test=2, tv_contexts=1),
    fv_formats=("arrow",),
    fv_n_tasks=2,
    composition=composition.CompositionSettings(queries="all").but(n_shots=2, n_clean=1, n_corrupted=1, n_dev=1,
                                                                   n_test=1, tv_contexts=1),
    k=10,
    tasks=("antonyms", "next_letter", "to_upper"),
)
"""A smoke run: every experiment, figure and table end to end with the least work: three tasks (two
categories, one of the paper's conflicting pairs); function vectors on the first two, by the FV paper's
protocol (ICL-correct queries, the universal heads) in one formulation and one prompt format (the arrow,
which reads every task the main table reads; Q:/A: needs one-token answers after a space), without the
per-task ranking and the all-queries comparison; the composition in its own format on all queries (few
list queries pass the ICL screen at two demonstrations); one item or prompt wherever one gives every
statistic and two where one would leave an interval or a mean over tasks undefined. The composition's
six tasks cost the most; `benchmarks/quick.py` times every step."""


def reproduce(model, out, tasks=None, protocol: Protocol = PAPER, seed: int = 0,
              progress: Progress = say, shard: Shard | None = None,
              experiments: Sequence[str] = EXPERIMENTS) -> dict[str, Outcome]:
    """The chosen `experiments`, in this order: main table, layer sweep, conflicting tasks (the
    paper's pairs among `tasks`), top tokens and clusters (each reusing the main table's best layers),
    function vectors, composition (of its own compound list tasks). Tasks left without single-token
    outputs by this model's tokenizer are skipped, each with one line. With a `shard`, only the shard's
    share of the units of the main table, the conflicting tasks, the clusters, the function vectors
    and the composition's vectors."""
    unknown = sorted(set(experiments) - set(EXPERIMENTS))
    if unknown:
        raise ValueError(f"unknown experiments {unknown}: choose from {', '.join(EXPERIMENTS)}")
    tasks = usable_tasks(model, resolve_tasks(tasks or protocol.tasks), progress)
    names = {t.name for t in tasks}
    pairs = [p for p in conflicting_tasks.PAPER_PAIRS if set(p) <= names]
    outcomes = {}
    with counter(len(experiments), "reproduce", unit="experiment") as done:
        if set(experiments) - {"function_vectors", "composition"}:
            main = main_table.run(model, out, tasks, protocol.main, seed, progress, shard)
            outcomes["main_table"] = main
            layers = None if shard else main_table.layers_of(main.results.tasks)
            if "main_table" in experiments:
                done.update()
        if "layer_sweep" in experiments:
            if not shard:
                outcomes["layer_sweep"] = layer_sweep.run(model, out, tasks, protocol.main, seed, progress,
                                                          main.results)
            done.update()
        if "conflicting_tasks" in experiments:
            if pairs:
                outcomes["conflicting_tasks"] = conflicting_tasks.run(
                    model, out, pairs, protocol.conflict, seed, main_settings=protocol.main, best_layers=layers,
                    progress=progress, shard=shard)
            else:
                progress("[conflicting_tasks] skipped: no pair of the paper has both tasks in this run")
            done.update()
        if "top_tokens" in experiments:
            if not shard:
                outcomes["top_tokens"] = top_tokens.run(model, out, tasks, protocol.main, seed, protocol.k, progress)
            done.update()
        if "clusters" in experiments:
            if len(tasks) >= 2:
                outcomes["clusters"] = clusters.run(model, out, tasks, protocol.cluster, seed,
                                                    main_settings=protocol.main, best_layers=layers,
                                                    progress=progress, shard=shard)
            else:
                progress("[clusters] skipped: clustering needs at least two tasks")
            done.update()
        if "function_vectors" in experiments:
            outcomes["function_vectors"] = function_vectors.run(model, out, tasks[:protocol.fv_n_tasks], protocol.fv,
                                                                seed, protocol.fv_formats, progress, shard)
            done.update()
        if "composition" in experiments:
            try:
                composition.shared_tasks(model, protocol.composition.format)
            except ValueError as err:
                progress(f"[composition] skipped: {err}")
            else:
                try:
                    outcomes["composition"] = composition.run(model, out, protocol.composition, seed, progress, shard)
                except UnusableTask as err:  # a task whose validation queries ICL never answers correctly
                    progress(f"[composition] skipped: {err}")
            done.update()
    return outcomes


def format_report(outcomes: dict[str, Outcome]) -> str:
    """Every analysis's table, one after another."""
    parts = []
    for name, outcome in outcomes.items():
        parts += [f"== {name.replace('_', ' ')} ==", as_text(outcome.results), ""]
    return "\n".join(parts)


def run_from_args(args: argparse.Namespace) -> tuple[Path, Configuration] | None:
    """Check the arguments, load the model, reproduce, print the tables and where the results are;
    the run directory and the configuration of its results (None for a shard, which only computes its
    share of the units)."""
    from tv_lens.models.loading import load_model

    start = time.perf_counter()
    out = args.out or default_out(args.model, args.quick)
    shard = check_run_arguments(args, out)
    protocol = QUICK if args.quick else PAPER
    tasks = resolve_tasks(args.tasks or protocol.tasks)  # bad task names fail before the model loads
    say(f"loading {args.model} ...")
    model = load_model(args.model, **placement(args))
    outcomes = reproduce(model, out, tasks, protocol, args.seed, shard=shard, experiments=args.experiments)
    if shard:
        computed = sum(len(o.computed) for o in outcomes.values())
        say(f"shard {shard} done in {time.perf_counter() - start:.0f} s: computed {computed} unit(s) in {out}/; "
            f"once every shard is done, run the same command without --shard to assemble the results")
        return
    say("")
    say(format_report(outcomes))
    say(f"results in {out}/ ({time.perf_counter() - start:.0f} s)")
    return out, Configuration.of_model(model, args.seed)
