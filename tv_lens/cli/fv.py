"""`tv-lens fv`: rank the heads that carry tasks (AIE) and save a task's function vector."""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

from tv_lens.cli.options import add_model_options, at_least, placement
from tv_lens.cli.vectors import dev_curve
from tv_lens.errors import TvLensError
from tv_lens.settings import FV_CLEAN, FV_CORRUPTED, FV_HEADS, FV_PAPER


def add_commands(commands) -> None:
    """Register `fv` on the `tv-lens` subparsers."""
    fv = commands.add_parser("fv", help="compute a task's function vector (Todd et al. 2024) and save it",
                             description="Rank every attention head by its average indirect effect on "
                                         "shuffled-label prompts, averaged over the 18 built-in tasks (the FV "
                                         "paper's universal head set; --heads task ranks this task's own), sum "
                                         "the top k heads' mean outputs on this task into a function vector, "
                                         "choose its layer on validation items unless --layer, and save it as "
                                         "safetensors (`tv-lens apply FILE QUERY...` adds it). Ranking the "
                                         "universal set runs every built-in task: keep it with --universal FILE.")
    fv.add_argument("--task", required=True, help="a task name (e.g. antonyms) or a task file (.json, .jsonl, .csv)")
    fv.add_argument("--k", type=at_least(1), default=FV_HEADS, help=f"heads summed (default: {FV_HEADS}, the paper's)")
    fv.add_argument("--heads", choices=("universal", "task"), default="universal",
                    help="head ranking: universal (AIE averaged over the built-in tasks, the paper's; default) or "
                         "task (this task's own AIE)")
    fv.add_argument("--universal", type=Path, default=None,
                    help="a universal head set (JSON): read when the file exists, else ranked and written there")
    fv.add_argument("--out", help="where to write the vector (default: <task>.fv.safetensors)")
    fv.add_argument("--format", choices=("qa", "arrow"), default="qa",
                    help="prompts: qa (the FV paper's Q:/A:, default) or arrow (the task-vector paper's)")
    fv.add_argument("--formulation", choices=("residual", "out_proj", "scaled"), default="residual",
                    help="what a head contributes (default residual: after a post-attention norm; see the docs)")
    fv.add_argument("--queries", choices=("icl_correct", "all"), default="icl_correct",
                    help="queries of ā and the AIE: those ICL answers correctly (the paper's; default) or all")
    fv.add_argument("--single-token-filter", action="store_true",
                    help="keep single-token answers only (default: every pair, the first answer token scored)")
    fv.add_argument("--layer", type=at_least(0), default=None,
                    help="layer to add it at (default: best on validation items)")
    fv.add_argument("--n-clean", type=at_least(1), default=FV_CLEAN,
                    help=f"clean prompts averaged for ā (default: {FV_CLEAN})")
    fv.add_argument("--n-corrupted", type=at_least(1), default=FV_CORRUPTED,
                    help=f"shuffled-label prompts for the AIE (default: {FV_CORRUPTED})")
    fv.add_argument("--n-dev", type=at_least(1), default=FV_PAPER.n_dev,
                    help=f"validation queries kept, for ā, the AIE and the layer sweep (default: {FV_PAPER.n_dev})")
    fv.add_argument("--seed", type=int, default=0, help="seed of the split and the prompts (default 0)")
    add_model_options(fv)
    fv.set_defaults(run=_fv)


def _print_heads(title: str, heads, low=None, high=None) -> None:
    print(title)
    for layer, head, aie in heads:
        interval = f"  [{low[layer][head]:+.4f}, {high[layer][head]:+.4f}]" if low is not None else ""
        print(f"  layer {layer:>2} head {head:>2}  AIE {aie:+.4f}{interval}")


def _universal(model, task, args: argparse.Namespace, settings: dict):
    """The universal head set: read from --universal, or ranked over the built-in tasks (and written
    to --universal when given); and this task's effects when they were computed on the way."""
    from tv_lens.codec import ResultsError
    from tv_lens.function_vectors.mediation import UniversalHeads, universal_heads
    from tv_lens.function_vectors.vector import UNIVERSAL_TASKS, effects_over

    path = args.universal
    if path is not None and path.exists():
        try:
            universal = UniversalHeads.from_dict(json.loads(path.read_text()), model.cfg.n_layers)
        except (ValueError, ResultsError) as err:
            raise TvLensError(f"{path} is not a universal head set ({err}): delete it to rank the heads "
                              "again") from None
        print(f"universal head set from {path} ({len(universal.tasks)} tasks)")
        return universal, None
    print(f"ranking the heads over the {len(UNIVERSAL_TASKS)} built-in tasks (the universal head set)"
          + ("" if path else "; --universal FILE keeps it for the next run"))
    effects, left_out = effects_over(model, [task if task.name == name else name for name in UNIVERSAL_TASKS],
                                     **settings)
    for name, why in left_out.items():
        print(f"  {name} left out: {why}")
    universal = universal_heads(effects, args.k)
    if path is not None:
        path.write_text(json.dumps(universal.to_dict(), indent=1))
        print(f"wrote {path}")
    return universal, next((e for e in effects if e.task == task.name), None)


def _fv(args: argparse.Namespace) -> None:
    from tv_lens.function_vectors.mediation import head_effects
    from tv_lens.function_vectors.vector import function_vector
    from tv_lens.models.loading import load_model
    from tv_lens.tasks import resolve_task
    from tv_lens.tasks.prompts import QA_FORMAT, PromptFormat, check_pairs

    task = resolve_task(args.task)
    check_pairs(task, QA_FORMAT if args.format == "qa" else PromptFormat())  # before the model loads
    model = load_model(args.model, **placement(args))
    settings = dict(fmt=args.format, seed=args.seed, n_clean=args.n_clean, n_corrupted=args.n_corrupted,
                    n_dev=args.n_dev, queries=args.queries, single_token_filter=args.single_token_filter)
    if args.heads == "task":
        effects = head_effects(model, task, **settings)
        low, high = effects.interval
        _print_heads(f"top {args.k} heads by average indirect effect over {effects.effects.shape[0]} shuffled-label "
                     f"prompts (P(correct) without a patch {effects.corrupted_prob:.3f}):",
                     effects.top_heads(args.k), low.tolist(), high.tolist())
        heads = "task"
    else:
        heads, effects = _universal(model, task, args, settings)
        _print_heads(f"universal set: top {args.k} heads by AIE averaged over {len(heads.tasks)} tasks:",
                     heads.top_heads(args.k), heads.aie_low, heads.aie_high)
    fv = function_vector(model, task, args.k, heads=heads, formulation=args.formulation, layer=args.layer,
                         effects=effects, **settings)
    if fv.dev_accuracy:
        print(dev_curve(fv.dev_accuracy, " (added zero-shot)"))
    out = args.out or re.sub(r"[^A-Za-z0-9_.-]", "_", task.name) + ".fv.safetensors"
    print(f"saved {fv.save(out)}: {fv.summary()}")
