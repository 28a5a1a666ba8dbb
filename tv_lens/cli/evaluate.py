"""`tv-lens evaluate`: the paper's main experiment on one task, built-in or from your own file."""

from __future__ import annotations

import argparse

from tv_lens.cli.options import add_model_options, placement


def add_commands(commands) -> None:
    """Register `evaluate` on the `tv-lens` subparsers."""
    p = commands.add_parser(
        "evaluate", help="baseline / ICL / task-vector accuracy on one task, with CIs and the layer curve",
        description="The paper's main experiment on one task with its protocol (100 baseline, 50 dev and "
                    "50 test items, 5 demonstrations, θ per item, best layer on dev): for a task file, "
                    "the same protocol as a built-in task of the same pairs.")
    p.add_argument("--task", required=True, help="a task name (e.g. antonyms) or a task file (.json, .jsonl, .csv)")
    p.add_argument("--scoring", choices=("exact", "prefix", "any_of"),
                   help="how a task file's answers are scored (default exact; prefix for facts whose first "
                        "token suffices, e.g. Par for Paris)")
    p.add_argument("--json", action="store_true", help="print the whole result (every test item too) as JSON")
    p.add_argument("--seed", type=int, default=0, help="seed of the item sampling (default 0)")
    add_model_options(p)
    p.set_defaults(run=run)


def format_result(result) -> str:
    """An `EvalResult` as text: the three accuracies with CIs, then the dev curve by layer."""
    settings = result.settings
    variant = "B `example: {x}-> {y}`" if result.leading_space else "A `example:{x}->{y}`"
    kept = (f"{result.n_pairs_filtered} kept by the single-token filter" if settings["single_token_filter"]
            else "no single-token filter")
    lines = [
        f"task {result.task} ({result.category}): {result.n_pairs} pairs, {kept}, prompt variant {variant}",
        f"model {result.model['model']}, seed {result.seed}: {settings['n_baseline']} baseline, "
        f"{settings['n_test']} test and {settings['n_dev']} dev items, {settings['n_shots']} demonstrations"
        + (" (fewer pairs than test and dev items: queries recur, with fresh demonstrations)"
           if result.n_pairs_filtered < settings["n_test"] + settings["n_dev"] else ""),
        f"baseline     {result.baseline}",
        f"ICL          {result.icl}",
        f"task vector  {result.tv}  at layer {result.best_layer} (best on dev)",
        "task-vector dev accuracy by layer:",
    ]
    for layer, accuracy in enumerate(result.dev_accuracy_by_layer):
        mark = "  <- best" if layer == result.best_layer else ""
        lines.append(f"  {layer:>3}  {accuracy.value:.2f}  {'#' * round(30 * accuracy.value):<30}{mark}".rstrip())
    lines.append(f"{sum(result.timings.values()):.1f} s, {result.tokens} tokens")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> None:
    import contextlib
    import json
    import sys

    from tv_lens.models.loading import load_model, load_tokenizer
    from tv_lens.task_vectors.evaluation import evaluate
    from tv_lens.tasks import resolve_task
    from tv_lens.tasks.prompts import PromptFormat, check_pairs

    task = resolve_task(args.task, scoring=args.scoring)
    check_pairs(task, PromptFormat())  # a text the arrow format cannot hold fails before the model loads
    task.filtered(load_tokenizer(args.model))  # a task the protocol refuses fails before the model loads
    with contextlib.redirect_stdout(sys.stderr):  # loading prints progress; stdout is the result (JSON)
        model = load_model(args.model, **placement(args))
    result = evaluate(model, task, seed=args.seed)
    print(json.dumps(result.to_dict(), ensure_ascii=False, indent=1) if args.json else format_result(result))
