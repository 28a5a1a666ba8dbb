"""Thread settings on this machine, quiet and with a competing CPU-bound process: which default to ship.

    python benchmarks/threads.py [--model gemma-3-270m] [--n 10] [--repeats 3] [--rounds 1] [--conditions quiet busy]

Each setting times the README's Python example (learn, apply, evaluate one task at reduced sizes; the
model load and a warm-up are not timed). OpenMP reads its wait policy once, when torch loads it, so each
policy runs in a fresh interpreter: torch's default (one thread per core; OpenMP's threads spin a while
before they sleep) and one thread; OMP_WAIT_POLICY=passive (waiting threads sleep) with torch's threads and one;
and the `tv-lens` program's default (`tv_lens.set_threads("auto")`: threads that adapt to the cores other
processes leave). The other settings are pinned (`tv_lens.set_threads(n)`) so that they do not adapt; all but
the last run MKL in the strict reproducible mode the program sets (MKL_CBWR=AUTO,STRICT), and the last shows
what it costs (the program's default with MKL_CBWR=AUTO). "busy" keeps one
`python -c "while True: pass"` running throughout and stops it afterwards. Each setting is timed
`--repeats` times, interleaved with the other settings of its interpreter, in `--rounds` fresh interpreters
(the rounds interleaved too: two interpreters of one setting differed by up to 1.2x on the 2-core VM); the
table gives the median of all its timings in seconds, its ratio to the best setting of the same
condition, and each interpreter's median.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

STRICT = {"MKL_CBWR": "AUTO,STRICT"}
PROCESSES = {  # process -> (environment, thread counts to time in it: "torch" is torch's default, "auto" adapts)
    "default": (STRICT, ["torch", "1"]),
    "passive": ({**STRICT, "OMP_WAIT_POLICY": "passive"}, ["torch", "1"]),
    "tv_lens": (STRICT, ["auto"]),
    "not strict": ({"MKL_CBWR": "AUTO"}, ["auto"]),
}  # "threads" in the table: the count at the end of the run (tv_lens's own choice for its row)
LABELS = {("default", "torch"): "torch default", ("default", "1"): "1 thread",
          ("passive", "torch"): "OMP_WAIT_POLICY=passive", ("passive", "1"): "1 thread, passive",
          ("tv_lens", "auto"): "tv_lens default (adapts)",
          ("not strict", "auto"): "tv_lens default, MKL not strict"}

WORKER = """
import json, sys, time
counts = sys.argv[3].split(",")
import tv_lens as tv
import torch
default = torch.get_num_threads()
model = tv.load_model(sys.argv[1])
n = int(sys.argv[2])
demos = [("hot", "cold"), ("big", "small"), ("fast", "slow"), ("wet", "dry"), ("old", "young")]
tv.learn(model, demos, dummies=["up", "happy"])  # warm-up: first-call costs are not timed
for count in [c for _ in range(int(sys.argv[5])) for c in counts]:  # repeats interleaved: noise hits all alike
    tv.set_threads(default if count == "torch" else count if count == "auto" else int(count))
    start = time.perf_counter()
    theta = tv.learn(model, demos, dummies=["up", "happy"])
    tv.apply(model, theta, ["high", "light"], layer=model.cfg.n_layers // 2)
    tv.evaluate(model, tv.get_task(sys.argv[4]), n_baseline=2 * n, n_dev=n, n_test=n)
    print(json.dumps({"count": count, "seconds": time.perf_counter() - start, "threads": torch.get_num_threads()}))
"""


def measure(process: str, model: str, task: str, n: int, repeats: int) -> dict[tuple[str, str], dict]:
    """Time the example `repeats` times for each thread count of `process`, in one fresh interpreter."""
    setting, counts = PROCESSES[process]
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "MKL_CBWR")}
    argv = [sys.executable, "-c", WORKER, model, str(n), ",".join(counts), task, str(repeats)]
    done = subprocess.run(argv, env={**env, **setting}, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-2000:])
    rows = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    return {(process, count): {"threads": next(r["threads"] for r in rows if r["count"] == count),
                               "times": [r["seconds"] for r in rows if r["count"] == count]}
            for count in counts}


def run_condition(condition: str, model: str, task: str, n: int, repeats: int,
                  rounds: int) -> dict[tuple[str, str], dict]:
    """Every setting, `rounds` interpreters each (interleaved), with a spinning competitor alive throughout
    when the condition is "busy"; per setting the median of all its timings and each interpreter's median."""
    competitor = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if condition == "busy" else None
    try:
        rows: dict[tuple[str, str], dict] = {}
        for _ in range(rounds):
            for process in PROCESSES:
                for key, row in measure(process, model, task, n, repeats).items():
                    seen = rows.setdefault(key, {"threads": row["threads"], "times": [], "per_process": []})
                    seen["times"] += row["times"]
                    seen["per_process"].append(statistics.median(row["times"]))
                    print(f"  {condition:<5} {LABELS[key]:<32} {row['threads']} thread(s) "
                          f"{seen['per_process'][-1]:7.1f} s", flush=True)
        for row in rows.values():
            row["seconds"] = statistics.median(row["times"])
        return rows
    finally:
        if competitor is not None:
            competitor.kill()
            competitor.wait()


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="gemma-3-270m")
    p.add_argument("--task", default="antonyms", help="the task evaluated (default antonyms)")
    p.add_argument("--n", type=int, default=10, help="dev and test items of the evaluation (baseline: 2n)")
    p.add_argument("--repeats", type=int, default=3, help="timings of each setting; the median is reported")
    p.add_argument("--rounds", type=int, default=1,
                   help="fresh interpreters per setting, interleaved (they differed by up to 1.2x here)")
    p.add_argument("--conditions", nargs="+", choices=("quiet", "busy"), default=["quiet", "busy"])
    args = p.parse_args(argv)
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} before the runs; model {args.model}, "
          f"learn + apply + evaluate({args.task}, n={args.n}) after a warm-up, median of {args.repeats} timings in "
          f"each of {args.rounds} interpreter(s) per setting", flush=True)
    results = {condition: run_condition(condition, args.model, args.task, args.n, args.repeats, args.rounds)
               for condition in args.conditions}
    print(f"load average {os.getloadavg()[0]:.1f} after the runs (other jobs on the machine count too)\n")
    print("| setting | " + " | ".join(f"{c} threads | {c} s | {c} / best | {c} s per interpreter" for c in results)
          + " |")
    print("|---|" + "---|---|---|---|" * len(results))
    best = {c: min(r["seconds"] for r in rows.values()) for c, rows in results.items()}
    for key, label in LABELS.items():
        cells = [f"{rows[key]['threads']} | {rows[key]['seconds']:.1f} | {rows[key]['seconds'] / best[c]:.2f}x | "
                 + ", ".join(f"{t:.1f}" for t in rows[key]["per_process"]) for c, rows in results.items()]
        print(f"| {label} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    start = time.perf_counter()
    main()
    print(f"\nbenchmark time {time.perf_counter() - start:.0f} s")
