"""Serving: answer queries with 5-shot ICL, or with the bare query and a stored task-level θ.

    python benchmarks/serving.py [--model gemma-3-270m] [--queries 10] [--batch-sizes 10 30] [--n-test 30]
                                 [--k 16] [--n-dev 50] [--threads N] [--tasks ...]

Per task: a task-level θ (K contexts, seed 1, test queries held out where the task allows, layer by a
sweep on `--n-dev` dev queries) is learned once and not timed. Accuracy (first token, the task's
scorer) is measured on `--n-test` test items. Latency is measured from text to answer, ICL and θ
interleaved: each of the first `--queries` test items alone (batch size 1), then the first B items in
one call for each B of `--batch-sizes` (time per query). ICL runs each item's own 5 demonstrations
plus the query; θ runs `TaskVectorSolver(queries)`. The floor is a forward of the BOS token alone:
the cost every batch-1 query pays whatever its length, so ICL latency / floor bounds the batch-1
speedup. Target: >= 3x lower latency at >= 90% of ICL accuracy (averaged over tasks where ICL
reaches 0.5).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings
from collections.abc import Callable

import torch

from tv_lens.models.loading import load_model
from tv_lens.patching.engine import Run, decode, encode, predict
from tv_lens.stats import Accuracy
from tv_lens.task_vectors.serving import TaskVectorSolver
from tv_lens.task_vectors.task_level import learn_task
from tv_lens.tasks import get_scorer, get_task, list_tasks, sample_splits
from tv_lens.tasks.prompts import PromptFormat

METHODS = ("icl", "tv")


def icl_answers(model, prompts: list[str]) -> list[str]:
    """Stripped first-token ICL answers to `prompts`, in one batched call."""
    predictions = predict(model, [Run(t) for t in encode(model, prompts)])
    return [answer.strip() for answer in decode(model, [p.token for p in predictions])]


def seconds(call: Callable[[], object]) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def measure(model, name: str, n_queries: int, batch_sizes: list[int], n_test: int, n_dev: int, k: int) -> dict:
    """Accuracies, per-query latencies by batch size and tokens per query of ICL and of a task-level θ."""
    task = get_task(name)
    kept = task.filtered(model.tokenizer)
    fmt = PromptFormat.for_task(kept)
    splits = sample_splits(kept, seed=0, n_test=n_test, n_dev=n_dev, n_baseline=0)
    held_out = {item.query for item in splits.test}
    exclude = held_out if len(kept) - len(held_out) >= 2 * (5 + 2) else set()
    theta = learn_task(model, kept, k=k, seed=1, dev=splits.dev, exclude=exclude, single_token_filter=False,
                       fmt=fmt)
    solver = TaskVectorSolver(model, theta)
    answer = {"icl": lambda items: icl_answers(model, [fmt.icl_prompt(i) for i in items]),
              "tv": lambda items: solver([i.query for i in items])}
    prompt = {"icl": fmt.icl_prompt, "tv": fmt.zero_shot_prompt}
    scorer = get_scorer(task.scoring)
    accuracy = {m: Accuracy.of(scorer(p, i.answers) for p, i in zip(answer[m](splits.test), splits.test))
                for m in METHODS}
    latency: dict[int, dict[str, list[float]]] = {1: {m: [] for m in METHODS}}
    for item in splits.test[:n_queries]:
        for m in METHODS:
            latency[1][m].append(seconds(lambda: answer[m]([item])))
    for size in batch_sizes:
        batch = splits.test[:size]
        latency[size] = {m: [seconds(lambda: answer[m](batch)) / len(batch)] for m in METHODS}
    timed = splits.test[:n_queries]
    tokens = {m: statistics.mean(len(t) for t in encode(model, [prompt[m](i) for i in timed])) for m in METHODS}
    return dict(task=name, accuracy=accuracy, layer=theta.layer, latency=latency, tokens=tokens)


def floor_ms(model, repeats: int = 20) -> float:
    """Median time of a forward of the BOS token alone: what any batch-1 query costs at least."""
    bos = torch.tensor([[model.tokenizer.bos_token_id]], device=model.cfg.device)
    with torch.inference_mode():
        return 1000 * statistics.median(seconds(lambda: model(bos)[0, -1].argmax().item()) for _ in range(repeats))


def report(rows: list[dict], args, device: str, floor: float, elapsed: float) -> None:
    sizes = [1, *args.batch_sizes]
    print(f"Model {args.model} on {device}, {torch.get_num_threads()} CPU thread(s); accuracy on {args.n_test} "
          f"test items per task; batch-1 latency over {args.queries} queries per task; task-level θ from K={args.k} "
          f"contexts, layer by a sweep on {args.n_dev} dev queries.\n")
    print("| task | ICL acc | θ acc | θ layer | ICL tokens | θ tokens | "
          + " | ".join(f"speedup (batch {b})" for b in sizes) + " |")
    print("|---|---|---|---|---|---|" + "---|" * len(sizes))
    for r in rows:
        ms = {b: {m: statistics.mean(r["latency"][b][m]) for m in METHODS} for b in sizes}
        print(f"| {r['task']} | {r['accuracy']['icl'].value:.2f} | {r['accuracy']['tv'].value:.2f} | {r['layer']} | "
              f"{r['tokens']['icl']:.1f} | {r['tokens']['tv']:.1f} | "
              + " | ".join(f"{ms[b]['icl'] / ms[b]['tv']:.1f}x" for b in sizes) + " |")
    print("\n| batch size | ICL ms per query | θ ms per query | speedup |\n|---|---|---|---|")
    for b in sizes:
        ms = {m: 1000 * statistics.mean(t for r in rows for t in r["latency"][b][m]) for m in METHODS}
        print(f"| {b} | {ms['icl']:.0f} | {ms['tv']:.0f} | {ms['icl'] / ms['tv']:.2f}x |")
    icl_one = 1000 * statistics.mean(t for r in rows for t in r["latency"][1]["icl"])
    print(f"\nFloor: a forward of one token takes {floor:.0f} ms, so no batch-1 θ query can beat "
          f"{icl_one / floor:.2f}x against ICL's {icl_one:.0f} ms (target >= 3x).")
    tokens = {m: statistics.mean(r["tokens"][m] for r in rows) for m in METHODS}
    print(f"Tokens per query: ICL {tokens['icl']:.1f}, θ {tokens['tv']:.1f} "
          f"({tokens['icl'] / tokens['tv']:.1f}x fewer).")
    mean = {m: statistics.mean(r["accuracy"][m].value for r in rows) for m in METHODS}
    print(f"Accuracy over all {len(rows)} tasks: ICL {mean['icl']:.2f}, θ {mean['tv']:.2f}.")
    strong = [r for r in rows if r["accuracy"]["icl"].value >= 0.5]
    if strong:
        icl, tv = (statistics.mean(r["accuracy"][m].value for r in strong) for m in METHODS)
        print(f"Over the {len(strong)} tasks where ICL >= 0.5: ICL {icl:.2f}, θ {tv:.2f}: θ keeps "
              f"{100 * tv / icl:.0f}% of ICL accuracy (target >= 90%).")
    else:
        print("ICL reaches 0.5 on no task: the accuracy target cannot be assessed.")
    print(f"Run time {elapsed:.0f} s (θ learning included, not timed per query).")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="gemma-3-270m")
    parser.add_argument("--queries", type=int, default=10, help="queries per task timed one at a time")
    parser.add_argument("--batch-sizes", type=int, nargs="*", default=[10, 30], help="batch sizes timed per query")
    parser.add_argument("--n-test", type=int, default=30, help="accuracy items per task")
    parser.add_argument("--n-dev", type=int, default=50, help="dev queries for the layer sweep (paper: 50)")
    parser.add_argument("--k", type=int, default=16)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--tasks", nargs="*", default=None)
    args = parser.parse_args()
    if max([args.queries, *args.batch_sizes]) > args.n_test:
        parser.error("--queries and --batch-sizes must not exceed --n-test (the timed items are test items)")
    warnings.filterwarnings("ignore", category=FutureWarning)
    if args.threads:
        torch.set_num_threads(args.threads)
    start = time.perf_counter()
    model = load_model(args.model)
    for _ in range(3):
        icl_answers(model, ["example:a->b\nexample:c->"])
    floor = floor_ms(model)
    rows = []
    for name in args.tasks or list_tasks()[:18]:
        rows.append(measure(model, name, args.queries, args.batch_sizes, args.n_test, args.n_dev, args.k))
        print(f"{name} done at {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
    report(rows, args, str(model.cfg.device), floor, time.perf_counter() - start)


if __name__ == "__main__":
    main()
