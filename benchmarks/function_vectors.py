"""Function vectors for one task at the FV paper's sizes, timed phase by phase.

    python benchmarks/function_vectors.py [--model gemma-3-270m] [--task antonyms] [--threads 1]

Phases: the validation and test queries ICL answers correctly (one clean 10-shot prompt each,
screened until 50 of each are found); ā over 100 clean 10-shot prompts; the AIE of every head over 25
shuffled-label prompts (each prompt's prefix runs once, its key/value cache serves the unpatched run
and the n_layers x n_heads patched last tokens); the FV (top 10 heads of the task) added at every
layer on 50 zero-shot and 50 shuffled-label dev prompts, and at the chosen layers on the test
prompts. Prints time per phase, tokens processed, the FLOP executed and this algorithm's floor
(every real token once through the blocks, logits only for the rows read). Target on the 2-core
CPU: AIE and FV evaluation in <= 90 s, within 2x of the floor.
"""

from __future__ import annotations

import argparse
import time

import torch

import tv_lens as tv
from tv_lens.function_vectors.items import fv_items, task_in_format
from tv_lens.function_vectors.vector import evaluate_fvs, fv_vectors
from tv_lens.patching.engine import counting


def block_params(model) -> int:
    """Parameters inside the transformer blocks (the per-token matmul work)."""
    return sum(p.numel() for name, p in model.named_parameters() if ".layers." in name or name.startswith("blocks."))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="gemma-3-270m")
    parser.add_argument("--task", default="antonyms")
    parser.add_argument("--format", choices=("qa", "arrow"), default="qa")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--n-clean", type=int, default=100)
    parser.add_argument("--n-corrupted", type=int, default=25)
    parser.add_argument("--n-dev", type=int, default=50)
    parser.add_argument("--n-test", type=int, default=50)
    parser.add_argument("--queries", choices=("icl_correct", "all"), default="icl_correct",
                        help="queries: those ICL answers correctly (the paper's; default) or all")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    model = tv.load_model(args.model)
    kept, fmt = task_in_format(model, tv.get_task(args.task), args.format)
    start = time.perf_counter()
    with counting() as count:
        items = fv_items(model, kept, fmt, 0, n_clean=args.n_clean, n_corrupted=args.n_corrupted, n_dev=args.n_dev,
                         n_test=args.n_test, queries=args.queries)
        screened = time.perf_counter()
        effects = tv.head_effects(model, kept, fmt=fmt, items=items)
        heads_done = time.perf_counter()
        vectors = {"residual": fv_vectors(model, effects, effects.top_heads(10))}
        evaluation = evaluate_fvs(model, vectors, items, fmt)[0]["residual"]
    total = time.perf_counter() - start
    phases = {"queries (ICL screening)": screened - start, "clean prompts (ā)": effects.timings["clean"],
              "corrupted prompts (AIE)": effects.timings["corrupted"], "FV evaluation": total - (heads_done - start)}

    n_layers, n_heads = model.cfg.n_layers, model.cfg.n_heads
    n_block, unembed = block_params(model), 2 * model.cfg.d_model * model.cfg.d_vocab
    rows_read = (items.icl_valid.total + items.icl_test.total
                 + len(items.clean) + len(items.corrupted) * (1 + n_layers * n_heads)
                 + (len(items.dev) + len(items.dev_shuffled)) * n_layers + len(items.test) + len(items.test_shuffled))
    executed = 2 * n_block * count.padded_tokens + unembed * count.logit_rows
    floor = 2 * n_block * count.tokens + unembed * rows_read
    print(f"model {args.model} ({n_layers} layers x {n_heads} heads, {n_block / 1e6:.0f}M block parameters, "
          f"vocabulary {model.cfg.d_vocab}), task {kept.name} ({len(kept)} pairs), format {args.format}, "
          f"{torch.get_num_threads()} thread(s)")
    print(f"clean prompts {len(items.clean)}, corrupted {len(items.corrupted)}, dev {len(items.dev)}, "
          f"test {len(items.test)}")
    print("top heads: " + ", ".join(f"L{layer}H{head} {aie:+.3f}" for layer, head, aie in effects.top_heads(10)))
    print(f"FV (residual) layer {evaluation.zero_shot_layer}: zero-shot {evaluation.zero_shot}, "
          f"shuffled {evaluation.shuffled} (layer {evaluation.shuffled_layer})")
    print(f"total {total:.1f} s; by phase: " + ", ".join(f"{k} {v:.1f} s" for k, v in phases.items()))
    print(f"tokens processed {count.tokens} real + {count.padded_tokens - count.tokens} padding in "
          f"{count.forwards} forward passes, {count.logit_rows} logit rows ({rows_read} read)")
    print(f"executed ~{executed / 1e12:.2f} TFLOP ({executed / total / 1e9:.1f} GFLOP/s); floor of this algorithm "
          f"~{floor / 1e12:.2f} TFLOP; executed / floor {executed / floor:.2f}")


if __name__ == "__main__":
    main()
