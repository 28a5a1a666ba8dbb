"""Serving: answer one query at a time with 5-shot ICL, or with the bare query and a stored task-level θ.

    python benchmarks/serving.py [--model gemma-3-270m] [--queries 10] [--n-test 50] [--k 16] [--n-dev 20]

Per task: a task-level θ (K contexts, seed 1, test queries held out where the task allows, layer by a
sweep on `--n-dev` dev queries) is learned once and not timed. Accuracy (first token, the task's
scorer) is measured on `--n-test` test items, batched. Latency is measured on the first `--queries`
test items, one query per forward (batch size 1), ICL and θ interleaved, from text to answer:
ICL runs the item's own 5 demonstrations plus the query; θ runs `TaskVectorSolver([query])`.
Target: >= 3x lower latency at >= 90% of ICL accuracy (averaged over tasks where ICL reaches 0.5).
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings

import torch

from tv_lens.apply import apply_tokens
from tv_lens.models import load_model
from tv_lens.prompts import PromptFormat
from tv_lens.runner import Run, decode, encode, run
from tv_lens.serving import TaskVectorSolver
from tv_lens.stats import Accuracy
from tv_lens.task_level import learn_task
from tv_lens.tasks import get_scorer, get_task, list_tasks, sample_splits


def icl_answer(model, prompt: str) -> tuple[str, int]:
    """First-token ICL answer to one prompt, and the tokens it took."""
    tokens = encode(model, [prompt])[0]
    (out,) = run(model, [Run(tokens)])
    return decode(model, [out.token])[0].strip(), len(tokens)


def measure(model, name: str, n_queries: int, n_test: int, n_dev: int, k: int) -> dict:
    task = get_task(name)
    kept = task.filtered(model.tokenizer) if task.single_token_filter else task
    fmt = PromptFormat.for_task(kept)
    splits = sample_splits(kept, seed=0, n_test=n_test, n_dev=n_dev, n_baseline=0)
    held_out = {item.query for item in splits.test}
    exclude = held_out if len(kept) - len(held_out) >= 2 * (5 + 2) else set()
    theta = learn_task(model, kept, k=k, seed=1, dev=splits.dev, exclude=exclude, single_token_filter=False,
                       fmt=fmt)
    solver = TaskVectorSolver(model, theta)
    scorer = get_scorer(task.scoring)

    icl_tokens = [o.token for o in run(model, [Run(t) for t in encode(model, [fmt.icl_prompt(i) for i in splits.test])])]
    tv_tokens = apply_tokens(model, [fmt.zero_shot_prompt(i) for i in splits.test], [theta.at()] * n_test, theta.layer)
    icl = Accuracy.of(scorer(p, i.answers) for p, i in zip(decode(model, icl_tokens), splits.test))
    tv = Accuracy.of(scorer(p, i.answers) for p, i in zip(decode(model, tv_tokens), splits.test))

    times = {"icl": [], "tv": []}
    lengths = {"icl": [], "tv": []}
    for item in splits.test[:n_queries]:
        start = time.perf_counter()
        _, n = icl_answer(model, fmt.icl_prompt(item))
        times["icl"].append(time.perf_counter() - start)
        lengths["icl"].append(n)
        start = time.perf_counter()
        solver([item.query])
        times["tv"].append(time.perf_counter() - start)
        lengths["tv"].append(len(encode(model, [fmt.zero_shot_prompt(item)])[0]))
    return dict(task=name, icl=icl, tv=tv, layer=theta.layer, times=times, lengths=lengths)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="gemma-3-270m")
    parser.add_argument("--queries", type=int, default=10, help="timed queries per task")
    parser.add_argument("--n-test", type=int, default=50, help="accuracy items per task")
    parser.add_argument("--n-dev", type=int, default=20, help="dev queries for the layer sweep")
    parser.add_argument("--k", type=int, default=16)
    parser.add_argument("--tasks", nargs="*", default=None)
    args = parser.parse_args()
    warnings.filterwarnings("ignore", category=FutureWarning)
    start = time.perf_counter()
    model = load_model(args.model)
    names = args.tasks or list_tasks()[:18]
    warm = encode(model, ["example:a->b\nexample:c->"])[0]
    for _ in range(3):
        run(model, [Run(warm)])
    rows = [measure(model, name, args.queries, args.n_test, args.n_dev, args.k) for name in names]

    print(f"Model {args.model} on {model.cfg.device}, {torch.get_num_threads()} threads; batch size 1; "
          f"{args.queries} timed queries per task ({args.queries * len(rows)} in all); accuracy on "
          f"{args.n_test} test items per task; task-level θ from K={args.k} contexts.\n")
    print("| task | ICL acc | θ acc | θ layer | ICL ms/query | θ ms/query | speedup | ICL tokens | θ tokens |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        icl_ms, tv_ms = (1000 * statistics.mean(r["times"][m]) for m in ("icl", "tv"))
        print(f"| {r['task']} | {r['icl'].value:.2f} | {r['tv'].value:.2f} | {r['layer']} | {icl_ms:.1f} | "
              f"{tv_ms:.1f} | {icl_ms / tv_ms:.2f}x | {statistics.mean(r['lengths']['icl']):.1f} | "
              f"{statistics.mean(r['lengths']['tv']):.1f} |")
    all_times = {m: [t for r in rows for t in r["times"][m]] for m in ("icl", "tv")}
    all_lengths = {m: [n for r in rows for n in r["lengths"][m]] for m in ("icl", "tv")}
    icl_ms, tv_ms = (1000 * statistics.mean(all_times[m]) for m in ("icl", "tv"))
    icl_med, tv_med = (1000 * statistics.median(all_times[m]) for m in ("icl", "tv"))
    strong = [r for r in rows if r["icl"].value >= 0.5]
    kept = sum(r["tv"].value for r in strong) / sum(r["icl"].value for r in strong) if strong else 0.0
    print(f"\nLatency per query: ICL {icl_ms:.1f} ms (median {icl_med:.1f}), θ {tv_ms:.1f} ms (median "
          f"{tv_med:.1f}): speedup {icl_ms / tv_ms:.2f}x (median {icl_med / tv_med:.2f}x; target >= 3x).")
    print(f"Tokens per query: ICL {statistics.mean(all_lengths['icl']):.1f}, θ "
          f"{statistics.mean(all_lengths['tv']):.1f}.")
    print(f"Accuracy over all {len(rows)} tasks: ICL {statistics.mean(r['icl'].value for r in rows):.2f}, θ "
          f"{statistics.mean(r['tv'].value for r in rows):.2f}.")
    if strong:
        print(f"Over the {len(strong)} tasks where ICL >= 0.5: ICL "
              f"{statistics.mean(r['icl'].value for r in strong):.2f}, θ {statistics.mean(r['tv'].value for r in strong):.2f}: "
              f"θ keeps {100 * kept:.0f}% of ICL accuracy (target >= 90%).")
    else:
        print("ICL reaches 0.5 on no task: the accuracy target cannot be assessed.")
    print(f"Run time {time.perf_counter() - start:.0f} s (θ learning included, not timed per query).")


if __name__ == "__main__":
    main()
