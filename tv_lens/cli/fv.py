"""`tv-lens fv`: find the heads that carry a task (AIE) and save their function vector."""

from __future__ import annotations

import argparse

from tv_lens.cli.options import add_model_options, at_least, placement
from tv_lens.cli.vectors import dev_curve
from tv_lens.settings import FV_CLEAN, FV_CORRUPTED, FV_HEADS, FV_PAPER


def add_commands(commands) -> None:
    """Register `fv` on the `tv-lens` subparsers."""
    fv = commands.add_parser("fv", help="compute a task's function vector (Todd et al. 2024) and save it",
                             description="Rank every attention head by its average indirect effect on "
                                         "shuffled-label prompts, sum the top k heads' mean outputs into a "
                                         "function vector, choose its layer on dev items unless --layer, and "
                                         "save it as safetensors (`tv-lens apply FILE QUERY...` adds it, a function "
                                         "vector's own mode).")
    fv.add_argument("--task", required=True, help="a task name (e.g. antonyms) or a task file (.json, .jsonl, .csv)")
    fv.add_argument("--k", type=at_least(1), default=FV_HEADS, help=f"heads summed (default: {FV_HEADS}, the paper's)")
    fv.add_argument("--out", help="where to write the vector (default: <task>.fv.safetensors)")
    fv.add_argument("--format", choices=("qa", "arrow"), default="qa",
                    help="prompts: qa (the FV paper's Q:/A:, default) or arrow (the task-vector paper's)")
    fv.add_argument("--formulation", choices=("residual", "out_proj", "scaled"), default="residual",
                    help="what a head contributes (default residual: after a post-attention norm; see the docs)")
    fv.add_argument("--layer", type=at_least(0), default=None, help="layer to add it at (default: best on dev items)")
    fv.add_argument("--n-clean", type=at_least(1), default=FV_CLEAN,
                    help=f"clean prompts averaged for ā (default: {FV_CLEAN})")
    fv.add_argument("--n-corrupted", type=at_least(1), default=FV_CORRUPTED,
                    help=f"shuffled-label prompts for the AIE (default: {FV_CORRUPTED})")
    fv.add_argument("--n-dev", type=at_least(1), default=FV_PAPER.n_dev,
                    help=f"dev queries of the layer sweep (default: {FV_PAPER.n_dev})")
    fv.add_argument("--seed", type=int, default=0, help="seed of the split and the prompts (default 0)")
    add_model_options(fv)
    fv.set_defaults(run=_fv)


def _fv(args: argparse.Namespace) -> None:
    from tv_lens.files import safe_name
    from tv_lens.function_vectors.mediation import head_effects
    from tv_lens.function_vectors.vector import function_vector
    from tv_lens.models.loading import load_model
    from tv_lens.tasks import resolve_task
    from tv_lens.tasks.prompts import QA_FORMAT, PromptFormat, check_pairs

    task = resolve_task(args.task)
    check_pairs(task, QA_FORMAT if args.format == "qa" else PromptFormat())  # before the model loads
    model = load_model(args.model, **placement(args))
    settings = dict(fmt=args.format, seed=args.seed, n_clean=args.n_clean, n_corrupted=args.n_corrupted)
    effects = head_effects(model, task, **settings)
    low, high = effects.interval
    print(f"top {args.k} heads by average indirect effect over {effects.effects.shape[0]} shuffled-label prompts "
          f"(P(correct) without a patch {effects.corrupted_prob:.3f}):")
    for layer, head, aie in effects.top_heads(args.k):
        print(f"  layer {layer:>2} head {head:>2}  AIE {aie:+.4f}  [{low[layer, head]:+.4f}, {high[layer, head]:+.4f}]")
    fv = function_vector(model, task, args.k, formulation=args.formulation, layer=args.layer, effects=effects,
                         n_dev=args.n_dev, **settings)
    if fv.dev_accuracy:
        print(dev_curve(fv.dev_accuracy, " (added zero-shot)"))
    out = args.out or safe_name(task.name, "task") + ".fv.safetensors"
    print(f"saved {fv.save(out)}: {fv.summary()}")
