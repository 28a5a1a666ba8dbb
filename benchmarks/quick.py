"""`tv-lens reproduce --quick`, the smoke run, timed step by step: wall and CPU time of each analysis.

    python benchmarks/quick.py [--model gemma-3-270m] [--threads 1] [--out DIR]

A fresh interpreter does what the command does, in its order: load the model, run each experiment of the
quick protocol (`analyses.reproduce.QUICK`) into one run directory (each later experiment reuses the main
table the first computed, as the command does), print the report, write the figures with their PNGs. Each
step is timed in wall-clock seconds and in CPU seconds (user + system of every thread of the process); the
total also counts the interpreter's start and imports. On a machine shared with other jobs the wall time
says little: with `--threads 1` the CPU time is close to what the wall time would be on an idle machine
with one thread, the honest proxy there. Without `--threads`, the program's default (threads adapted to
the cores other processes leave). The model's processed-weight cache is filled by the first load ever; run
once more if the load step says it was cold. The run directory is a fresh temporary one unless `--out`.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

WORKER = """
import json, sys, time
from pathlib import Path

def step(name, work):
    wall, cpu = time.perf_counter(), time.process_time()
    value = work()
    print(json.dumps({"step": name, "wall": time.perf_counter() - wall, "cpu": time.process_time() - cpu}),
          flush=True)
    return value

model_spec, out, threads = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
from tv_lens import threads as program
program.program_defaults()  # what the tv-lens program sets before torch loads (threads that adapt, ...)
if threads:
    program.set_threads(threads)
import tv_lens as tv
from analyses import EXPERIMENTS
from analyses.commands import write_figures
from analyses.reproduce import QUICK, format_report, reproduce
model = step("load model", lambda: tv.load_model(model_spec))
quiet = lambda line: None
outcomes = {}
for name in EXPERIMENTS:
    outcomes.update(step(name, lambda: reproduce(model, out, protocol=QUICK, progress=quiet, experiments=[name])))
step("report", lambda: format_report({n: o for n, o in outcomes.items() if n in EXPERIMENTS}))
step("figures", lambda: write_figures(out, None, png=True))
"""


def run(model: str, out: Path, threads: int) -> tuple[list[dict], float, float]:
    """The steps of one quick run in a fresh interpreter; its total wall and CPU seconds."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", WORKER, model, str(out), str(threads)], cwd=ROOT,
                          capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-3000:])
    steps = [json.loads(line) for line in done.stdout.splitlines() if line.startswith('{"step"')]
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return steps, wall, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="gemma-3-270m")
    parser.add_argument("--threads", type=int, default=0, help="pin torch threads (default: the program's, adapting)")
    parser.add_argument("--out", type=Path, help="run directory (default: a fresh temporary one)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        steps, wall, cpu = run(args.model, args.out or Path(tmp) / "quick", args.threads)
    load = os.getloadavg()[0]
    print(f"tv-lens reproduce --quick on {args.model}, threads: {args.threads or 'the program default (adapting)'}, "
          f"load average {load:.1f} on {os.cpu_count()} CPUs at the end")
    print("\n| step | wall s | CPU s |\n|---|---|---|")
    for s in steps:
        print(f"| {s['step']} | {s['wall']:.1f} | {s['cpu']:.1f} |")
    print(f"| **total** (interpreter start and imports included) | {wall:.1f} | {cpu:.1f} |")


if __name__ == "__main__":
    main()
