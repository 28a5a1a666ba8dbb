"""The main experiment on one task with the model placed in several ways, each in a fresh process,
then what bfloat16 changes.

    python benchmarks/scale.py [--model gemma-3-270m] [--task antonyms] [--threads 1]
                               [--precision-models tiny-llama tiny-gemma] [--precision-tasks ...]

Placements: the whole model on the CPU; the last half of its layers offloaded to disk by accelerate;
on a GPU when there is one, float32 and bfloat16. For each: load time, time of `evaluate` on the task
(the paper's protocol at the sizes given), peak RSS (and peak GPU memory), the accuracies, and the
largest relative difference of the mean θ from the first placement's.

Precision: `evaluate` on each precision model and task in float32 and in bfloat16 (on the CPU, or the
GPU when there is one): accuracies, best layer, θ's relative difference, and the share of test items
whose ICL / task-vector prediction changed.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

SIZES = ("n_baseline", "n_dev", "n_test")


def run_placement(config: dict) -> dict:
    """Load the model as `config` says, evaluate the task, and report time, memory and results."""
    import resource

    import tv_lens as tv
    from tv_lens.models.loading import layer_device_map

    torch.set_num_threads(config["threads"])
    placement = {"dtype": getattr(torch, config["dtype"])}
    if config["offload_half"]:
        placement["device_map"] = layer_device_map(config["model"],
                                                   lambda layer, n: "disk" if layer >= n // 2 else "cpu")
        placement["offload_folder"] = config["offload_folder"]
    else:
        placement["device"] = config["device"]
    start = time.perf_counter()
    model = tv.load_model(config["model"], **placement)
    loaded = time.perf_counter()
    result = tv.evaluate(model, tv.get_task(config["task"]), **{k: config[k] for k in SIZES})
    done = time.perf_counter()
    torch.save(result.mean_theta.float().cpu(), config["theta_path"])
    on_disk = sum(v == "disk" for v in (getattr(model.original_model, "hf_device_map", None) or {}).values())
    return {
        "load_s": loaded - start, "run_s": done - loaded, "modules_on_disk": on_disk,
        "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
        "peak_gpu_gb": torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None,
        "baseline": result.baseline.value, "icl": result.icl.value, "tv": result.tv.value,
        "best_layer": result.best_layer,
    }


def in_fresh_process(config: dict) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": str(config["threads"]), "HF_HUB_OFFLINE": "1"}
    out = subprocess.run([sys.executable, __file__, "--child", json.dumps(config)], env=env,
                         capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"placement {config['name']} failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def rel_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).abs().max() / b.abs().max()).item()


def placements(args) -> list[dict]:
    found = [("whole, CPU", "cpu", "float32", False), ("half the layers on disk", "cpu", "float32", True)]
    if torch.cuda.is_available():
        found += [("GPU, float32", "cuda", "float32", False), ("GPU, bfloat16", "cuda", "bfloat16", False)]
    return [dict(name=name, device=device, dtype=dtype, offload_half=offload) for name, device, dtype, offload in found]


def compare_placements(args, scratch: Path) -> None:
    print(f"Model {args.model}, task {args.task} ({', '.join(f'{k} {getattr(args, k)}' for k in SIZES)}), "
          f"{args.threads} torch thread(s).")
    print("| placement | modules on disk | load s | evaluate s | peak RSS GB | peak GPU GB | baseline | ICL "
          "| task vector | best layer | θ max rel. diff |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    reference = None
    for i, placement in enumerate(placements(args)):
        config = {**placement, "model": args.model, "task": args.task, "threads": args.threads,
                  "theta_path": str(scratch / f"theta{i}.pt"), "offload_folder": str(scratch / f"offload{i}"),
                  **{k: getattr(args, k) for k in SIZES}}
        r = in_fresh_process(config)
        theta = torch.load(config["theta_path"])
        reference = theta if reference is None else reference
        gpu = "-" if r["peak_gpu_gb"] is None else f"{r['peak_gpu_gb']:.2f}"
        print(f"| {placement['name']} | {r['modules_on_disk']} | {r['load_s']:.1f} | {r['run_s']:.1f} | "
              f"{r['peak_rss_gb']:.2f} | {gpu} | {r['baseline']:.2f} | {r['icl']:.2f} | {r['tv']:.2f} | "
              f"{r['best_layer']} | {rel_diff(theta, reference):.1e} |", flush=True)


def compare_precision(args) -> None:
    import tv_lens as tv

    device = "cuda" if torch.cuda.is_available() else "cpu"
    print()
    print(f"float32 against bfloat16 on {device} ({', '.join(f'{k} {getattr(args, k)}' for k in SIZES)}):")
    print("| model | task | baseline fp32 / bf16 | ICL fp32 / bf16 | task vector fp32 / bf16 | best layer fp32 / bf16 "
          "| θ max rel. diff | ICL predictions changed | TV predictions changed |")
    print("|---|---|---|---|---|---|---|---|---|")
    for spec in args.precision_models:
        models = [tv.load_model(spec, device=device, dtype=dtype) for dtype in (torch.float32, torch.bfloat16)]
        for name in args.precision_tasks:
            full, half = (tv.evaluate(m, tv.get_task(name), **{k: getattr(args, k) for k in SIZES}) for m in models)
            pairs = list(zip(full.test_items, half.test_items))
            icl = sum(a.icl != b.icl for a, b in pairs) / len(pairs)
            changed = sum(a.tv != b.tv for a, b in pairs) / len(pairs)
            theta = rel_diff(half.mean_theta.float().cpu(), full.mean_theta.float().cpu())
            print(f"| {spec} | {name} | {full.baseline.value:.2f} / {half.baseline.value:.2f} | "
                  f"{full.icl.value:.2f} / {half.icl.value:.2f} | {full.tv.value:.2f} / {half.tv.value:.2f} | "
                  f"{full.best_layer} / {half.best_layer} | {theta:.1e} | {icl:.2f} | {changed:.2f} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="gemma-3-270m")
    parser.add_argument("--task", default="antonyms")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default: 1)")
    parser.add_argument("--n-baseline", type=int, default=50)
    parser.add_argument("--n-dev", type=int, default=50)
    parser.add_argument("--n-test", type=int, default=50)
    parser.add_argument("--precision-models", nargs="*", default=["tiny-llama", "tiny-gemma"])
    parser.add_argument("--precision-tasks", nargs="*", default=["next_letter", "to_upper", "list_first"])
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_placement(json.loads(args.child))))
        return
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as scratch:
        compare_placements(args, Path(scratch))
    compare_precision(args)


if __name__ == "__main__":
    main()
