"""The main experiment on all 18 tasks at the paper's sizes, timed phase by phase.

    python benchmarks/main_experiment.py [--model gemma-3-270m] [--tasks antonyms ...]

Prints the per-task table (baseline / ICL / task vector with Wilson 95% CIs, best layer), time per
phase, tokens processed, tokens/s, achieved GFLOP/s against a measured matmul peak, and the FLOP
floor of the work (real tokens only, logits only where read). Target on a 2-core machine: all 18
tasks in <= 5 minutes, peak RSS <= 3 GB.
"""

from __future__ import annotations

import argparse
import resource
import time
from collections import defaultdict

import torch

import tv_lens as tv
from tv_lens.patching.engine import counting


def matmul_peak_gflops(device: str | torch.device, n: int = 1024, repeats: int = 10) -> float:
    """Best fp32 matmul throughput of `device` (the model's), as a yardstick."""
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    sync = torch.cuda.synchronize if torch.device(device).type == "cuda" else (lambda: None)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        a @ b
        sync()
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best / 1e9


def block_params(model) -> int:
    """Parameters inside the transformer blocks (the per-token matmul work)."""
    return sum(p.numel() for name, p in model.named_parameters() if ".layers." in name or name.startswith("blocks."))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="gemma-3-270m")
    parser.add_argument("--tasks", nargs="+", default=None)
    args = parser.parse_args()

    model = tv.load_model(args.model)
    peak = matmul_peak_gflops(model.cfg.device)
    tasks = args.tasks or tv.list_tasks()
    phases: dict[str, float] = defaultdict(float)
    results = []
    start = time.perf_counter()
    print("| task | pairs kept | baseline | ICL | task vector | best layer | seconds |")
    print("|---|---|---|---|---|---|---|")
    with counting() as count:
        for name in tasks:
            t0 = time.perf_counter()
            r = tv.evaluate(model, tv.get_task(name))
            results.append(r)
            for phase, seconds in r.timings.items():
                phases[phase] += seconds
            print(f"| {name} | {r.n_pairs_filtered} | {r.baseline} | {r.icl} | {r.tv} | {r.best_layer} | "
                  f"{time.perf_counter() - t0:.1f} |", flush=True)
    total = time.perf_counter() - start
    mean = {key: sum(getattr(r, key).value for r in results) / len(results) for key in ("baseline", "icl", "tv")}
    print(f"| **mean** | | {mean['baseline']:.2f} | {mean['icl']:.2f} | {mean['tv']:.2f} | | {total:.1f} |")

    n_block = block_params(model)
    unembed = 2 * model.cfg.d_model * model.cfg.d_vocab
    executed = 2 * n_block * count.padded_tokens + unembed * count.logit_rows
    read_rows = sum(r.baseline.total + r.icl.total + r.tv.total
                    + len(r.dev_accuracy_by_layer) * r.dev_accuracy_by_layer[0].total for r in results)
    floor = 2 * n_block * count.tokens + unembed * read_rows
    print()
    print(f"model {args.model}: {model.cfg.n_layers} layers, d_model {model.cfg.d_model}, "
          f"{n_block / 1e6:.0f}M block parameters, vocabulary {model.cfg.d_vocab}")
    print(f"total {total:.1f} s for {len(results)} tasks; by phase: "
          + ", ".join(f"{k} {v:.1f} s" for k, v in phases.items()))
    print(f"tokens processed {count.tokens} real + {count.padded_tokens - count.tokens} padding "
          f"in {count.forwards} forward passes: {count.tokens / total:.0f} tokens/s")
    print(f"executed ~{executed / 1e12:.2f} TFLOP ({executed / total / 1e9:.1f} GFLOP/s; matmul peak "
          f"{peak:.1f} GFLOP/s, {100 * executed / total / 1e9 / peak:.0f}% of it); FLOP floor of the work "
          f"~{floor / 1e12:.2f} TFLOP (real tokens only, logits only where read)")
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GB")


if __name__ == "__main__":
    main()
