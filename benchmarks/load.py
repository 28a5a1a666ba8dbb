"""Cold and warm load time and peak RSS of the embedded models, each load in a fresh process.

    python benchmarks/load.py [--models gemma-3-270m smollm2-135m]

Cold: an empty cache directory (the GGUF is de-quantized and cached). Warm: the cache is filled.
Target on a 2-core machine: warm load of gemma-3-270m <= 15 s, peak RSS <= 2.5 GB.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

CHILD = """
import json, resource, time
t0 = time.perf_counter()
import tv_lens
t1 = time.perf_counter()
model = tv_lens.load_model({spec!r})
t2 = time.perf_counter()
print(json.dumps({{"import_s": t1 - t0, "load_s": t2 - t1,
                  "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}}))
"""


def measure(spec: str, cache: str) -> dict:
    env = {**os.environ, "TV_LENS_CACHE": cache, "HF_HUB_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "-c", CHILD.format(spec=spec)], env=env,
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["gemma-3-270m", "smollm2-135m"])
    args = parser.parse_args()
    print(f"{'model':<15} {'phase':<5} {'import s':>9} {'load s':>8} {'peak RSS GB':>12}")
    for spec in args.models:
        with tempfile.TemporaryDirectory() as cache:
            for phase in ("cold", "warm"):
                r = measure(spec, cache)
                print(f"{spec:<15} {phase:<5} {r['import_s']:>9.1f} {r['load_s']:>8.1f} "
                      f"{r['peak_rss_gb']:>12.2f}", flush=True)


if __name__ == "__main__":
    main()
