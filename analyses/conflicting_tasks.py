"""Experiment 3, conflicting tasks: demonstrations of task A, with task B's θ patched in at the
last position. Does the model follow A (the demonstrations) or B (the vector)?

    python -m analyses.conflicting_tasks --model tiny-llama --pairs next_letter:to_upper --out runs/x
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass

from tv_lens.cli.options import at_least
from tv_lens.patching.engine import Run, decode, encode, predict, token_limit
from tv_lens.patching.interventions import Intervention
from tv_lens.progress import bar
from tv_lens.runs.records import ConflictItem, ConflictPair
from tv_lens.runs.store import Shard, Store
from tv_lens.settings import PAPER, PAPER_4_SHOTS, AnalysisSettings, Settings
from tv_lens.stats import Accuracy
from tv_lens.task_vectors.learning import learn_items
from tv_lens.tasks import Item, Task, get_scorer, items_for, resolve_task, sample_items
from tv_lens.tasks.prompts import PromptFormat, prompt_ready

from . import main_table
from .common import Outcome, Progress, report_reused, run_command, say

ANALYSIS = "conflicting_tasks"
PAPER_PAIRS = (("next_letter", "to_upper"), ("list_last", "list_first"), ("prev_letter", "next_letter"),
               ("present_past", "present_gerund"), ("en_es", "en_fr"))


@dataclass(frozen=True)
class ConflictSettings(AnalysisSettings):
    """The paper's: 4 demonstrations per prompt and 2 dummy queries for θ_B (`sizes`), 50 queries per pair."""

    USES = ("n_shots", "n_dummies")
    sizes: Settings = PAPER_4_SHOTS
    n_items: int = 50


def pair_items(task_a: Task, task_b: Task, settings: ConflictSettings, seed: int) -> tuple[list[Item], list[Item]]:
    """Items of A (A's demonstrations, a query valid for both tasks) and, for the same queries,
    items of B whose demonstrations and dummy queries give θ_B (none of them is the query)."""
    common = set(task_a.inputs) & set(task_b.inputs)
    if not common:
        raise ValueError(f"tasks {task_a.name!r} and {task_b.name!r} share no input: "
                         "a conflicting pair needs queries valid for both tasks")
    items_a = sample_items(task_a, settings.n_items, seed, n_shots=settings.sizes.n_shots, n_dummies=0,
                           exclude=[x for x in task_a.inputs if x not in common])
    items_b = items_for(task_b, [item.query for item in items_a], random.Random(f"{seed}:{task_a.name}:{task_b.name}"),
                        settings.sizes.n_shots, settings.sizes.n_dummies)
    return items_a, items_b


def pair_result(model, task_a: Task, task_b: Task, layer: int, settings: ConflictSettings, seed: int) -> ConflictPair:
    """Plain ICL on A's prompts and the same prompts with θ_B at `layer`, each scored against A and B."""
    task_a, task_b = task_a.filtered(model.tokenizer), task_b.filtered(model.tokenizer)
    fmt_a, fmt_b = PromptFormat.for_task(task_a), PromptFormat.for_task(task_b)
    limit, n_shots = token_limit(model), settings.sizes.n_shots
    task_a = prompt_ready(task_a, fmt_a, model.tokenizer, limit, n_shots)
    task_b = prompt_ready(task_b, fmt_b, model.tokenizer, limit, n_shots)
    items_a, items_b = pair_items(task_a, task_b, settings, seed)
    thetas_b, _ = learn_items(model, items_b, fmt_b)
    prompts = encode(model, [fmt_a.icl_prompt(i) for i in items_a])
    outputs = predict(model, [[Run(t), Run(t, (Intervention(layer, theta[layer]),))]
                              for t, theta in zip(prompts, thetas_b)])
    icl = decode(model, [o[0].token for o in outputs])
    patched = decode(model, [o[1].token for o in outputs])
    score_a, score_b = get_scorer(task_a.scoring), get_scorer(task_b.scoring)

    def accuracy(preds: list[str], score, items: list[Item]) -> Accuracy:
        return Accuracy.of(score(p, i.answers) for p, i in zip(preds, items))

    return ConflictPair(
        task_a=task_a.name, task_b=task_b.name, layer=layer, n_items=len(items_a),
        icl_vs_a=accuracy(icl, score_a, items_a), icl_vs_b=accuracy(icl, score_b, items_b),
        patched_vs_a=accuracy(patched, score_a, items_a), patched_vs_b=accuracy(patched, score_b, items_b),
        items=[ConflictItem(a.query, list(a.answers), list(b.answers), i, p)
               for a, b, i, p in zip(items_a, items_b, icl, patched)],
    )


def parse_pair(text: str) -> tuple[str, str]:
    """'A:B' -> (A, B)."""
    a, sep, b = text.partition(":")
    if not sep or not a or not b:
        raise argparse.ArgumentTypeError(f"a pair is written A:B (demonstrations of A, θ of B), got {text!r}")
    return a, b


def run(model, out, pairs: Sequence[tuple[str | Task, str | Task]] = PAPER_PAIRS,
        settings: ConflictSettings = ConflictSettings(), seed: int = 0, layer: int | None = None,
        main_settings: Settings = PAPER,
        best_layers: dict[str, int] | None = None, progress: Progress = say, shard: Shard | None = None) -> Outcome:
    """Every pair (with a `shard`, its share of them), at `layer` or else at B's best layer (from
    `best_layers`, or the main table run or reused in `out`)."""
    resolved = [(resolve_task(a), resolve_task(b)) for a, b in pairs]
    if shard:
        mine = set(shard.share([f"{a.name}:{b.name}" for a, b in resolved]))
        resolved = [(a, b) for a, b in resolved if f"{a.name}:{b.name}" in mine]
    layers = best_layers or {}
    missing = [b for _, b in resolved if b.name not in layers]
    main_computed: list[str] = []  # main-table units computed here for B's best layers
    if layer is None and missing:
        tasks_b = list({b.name: b for b in missing}.values())
        main_units, main_store = main_table.task_results(model, out, tasks_b, main_settings, seed, progress)
        layers = {**layers, **main_table.layers_of([u.result for u in main_units])}
        main_computed = [f"{main_table.ANALYSIS}/{key}" for key in main_store.computed]
    store = Store.open(out, ANALYSIS, model, settings.record(), seed, progress)
    units = []
    for i, (a, b) in enumerate(bar(resolved, "conflicting tasks", unit="pair"), 1):
        at = layer if layer is not None else layers[b.name]

        def compute(a=a, b=b, at=at, i=i) -> tuple[ConflictPair, None]:
            start = time.perf_counter()
            done = pair_result(model, a, b, at, settings, seed)
            progress(f"[conflicting_tasks] {i}/{len(resolved)} {a.name} -> {b.name} at layer {at}: "
                     f"patched follows B {done.patched_vs_b.value:.2f}, A {done.patched_vs_a.value:.2f} "
                     f"in {time.perf_counter() - start:.1f} s")
            return done, None

        unit = store.get(f"{a.name}__{b.name}__layer{at}", compute, identity=f"{a.digest}-{b.digest}")
        units.append(unit)
    report_reused(ANALYSIS, store.reused, progress)
    if shard:
        return Outcome(None, None, main_computed + store.computed, store.reused)
    layer_choice = f"given: {layer}" if layer is not None else "best layer of task B in the main table"
    written = store.write_results(units, layer_choice=layer_choice, pairs=[u.result for u in units])
    return Outcome(written, store.results_path, main_computed + store.computed, store.reused)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--pairs", nargs="+", type=parse_pair, default=list(PAPER_PAIRS),
                   help="pairs A:B (default: the paper's five)")
    p.add_argument("--layer", type=at_least(0), help="patch layer (default: B's best layer in the main table)")
    p.add_argument("--n-items", type=at_least(1), default=ConflictSettings.n_items)


def main(argv: list[str] | None = None) -> int:
    return run_command(argv, __doc__, (add_arguments, main_table.add_settings_arguments),
                       lambda model, out, shard, args: run(
                           model, out, args.pairs, ConflictSettings(n_items=args.n_items), args.seed, args.layer,
                           main_table.settings_from_args(args), shard=shard), tasks=False,
                       check=lambda args: [resolve_task(name) for pair in args.pairs for name in pair])


if __name__ == "__main__":
    sys.exit(main())
