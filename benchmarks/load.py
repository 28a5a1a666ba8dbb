"""Cold and warm load time, peak RSS and cache size of the embedded models, each load in a fresh process.

    python benchmarks/load.py [--models gemma-3-270m smollm2-135m] [--threads 1]

Cold: an empty cache directory (the GGUF is de-quantized, processed and cached). Warm: the cache is
filled. CPU s is the process's CPU time (import and load), which a busy machine inflates less than
the wall time. Cache size is the disk the cache directory takes, against the float32 size of the weights.
Targets on a 2-core machine: cold load of gemma-3-270m <= 60 s, warm <= 15 s, peak RSS <= 2.5 GB,
cache <= 2x the float32 weights.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = """
import json, resource, time
t0 = time.perf_counter()
import torch
import tv_lens
torch.set_num_threads({threads})
t1 = time.perf_counter()
model = tv_lens.load_model({spec!r})
t2 = time.perf_counter()
n_params = sum(p.numel() for p in model.original_model.parameters())
usage = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({{"import_s": t1 - t0, "load_s": t2 - t1, "fp32_gb": 4 * n_params / 2**30,
                  "cpu_s": usage.ru_utime + usage.ru_stime,
                  "peak_rss_gb": usage.ru_maxrss / 2**20}}))
"""


def disk_gb(folder: str) -> float:
    return sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file()) / 2**30


def measure(spec: str, cache: str, threads: int) -> dict:
    env = {**os.environ, "TV_LENS_CACHE": cache, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": str(threads)}
    out = subprocess.run([sys.executable, "-c", CHILD.format(spec=spec, threads=threads)], env=env,
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["gemma-3-270m", "smollm2-135m"])
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default: 1)")
    args = parser.parse_args()
    print(f"torch threads: {args.threads}")
    print(f"{'model':<15} {'phase':<5} {'import s':>9} {'load s':>8} {'CPU s':>6} {'peak RSS GB':>12} {'cache GB':>9} "
          f"{'loaded weights fp32 GB':>23}")
    for spec in args.models:
        with tempfile.TemporaryDirectory() as cache:
            for phase in ("cold", "warm"):
                r = measure(spec, cache, args.threads)
                print(f"{spec:<15} {phase:<5} {r['import_s']:>9.1f} {r['load_s']:>8.1f} {r['cpu_s']:>6.1f} "
                      f"{r['peak_rss_gb']:>12.2f} {disk_gb(cache):>9.2f} {r['fp32_gb']:>23.2f}", flush=True)


if __name__ == "__main__":
    main()
