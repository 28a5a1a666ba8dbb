"""CPU threads for torch, on request: `set_threads("auto")` adapts them to the cores other processes leave
idle (chosen by measurement, benchmarks/threads.py), `set_threads(n)` pins n. The `tv-lens` program does the
first by default (and asks MKL for its strict mode); a Python process keeps torch's own settings unless asked.

torch runs one OpenMP thread per core and lets a waiting thread spin before it sleeps. On an idle 2-core
machine that is much faster than one thread (1.35x to 1.6x); beside one CPU-bound job the spinning
threads fight it and run about 2x slower than one thread. OpenMP's passive wait policy avoids the fight but
loses the speed. So, once asked to adapt, before each forward pass and model load (`adapt`, at most every
`INTERVAL_S`) tv_lens measures the cores other processes used since it last looked (/proc/stat less this
process's CPU time) and gives torch the cores they left. The count torch is set to (its default,
OMP_NUM_THREADS, `torch.set_num_threads`) is the most it uses. Where /proc/stat does not exist (macOS,
Windows) nothing adapts, and the program sets OMP_WAIT_POLICY=passive instead, before torch loads.

MKL splits the sums of some matrix products between threads, which changes their last bits with the thread
count. In its strict reproducible mode (MKL_CBWR=AUTO,STRICT) float32 results on x86 CPUs do not depend on
the count. MKL reads the variable once, at the first matrix product, so the program sets it before it loads
torch; in Python, set it in the environment before starting Python (`MKL_CBWR=AUTO,STRICT python ...`):
`set_threads("auto")` warns once where it is not set.
"""

from __future__ import annotations

import os
import sys
import threading
import time
import warnings
from dataclasses import dataclass

from tv_lens.errors import TvLensError

PROC_STAT = "/proc/stat"
INTERVAL_S = 0.5
# /proc/stat columns after the name: user nice system idle iowait irq softirq steal (guest time is in user)
_BUSY_COLUMNS = (0, 1, 2, 5, 6, 7)


def cores() -> frozenset[int]:
    """The cores this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return frozenset(os.sched_getaffinity(0))
    return frozenset(range(os.cpu_count() or 1))


@dataclass(frozen=True)
class CpuSample:
    """A moment's CPU counters: wall clock, CPU seconds spent on this process's cores by every process,
    and by this process alone."""

    wall_s: float
    busy_s: float
    own_s: float


def sample(on: frozenset[int] | None = None) -> CpuSample | None:
    """Read the counters now, over the cores `on` (default: this process's); None where /proc/stat cannot be read."""
    on = cores() if on is None else on
    try:
        with open(PROC_STAT) as stat:
            lines = stat.read().splitlines()
    except OSError:
        return None
    ticks = 0
    for line in lines:
        name, *values = line.split()
        if name.startswith("cpu") and name[3:].isdigit() and int(name[3:]) in on:
            ticks += sum(int(values[i]) for i in _BUSY_COLUMNS)
    return CpuSample(time.monotonic(), ticks / os.sysconf("SC_CLK_TCK"), time.process_time())


def others_cores(before: CpuSample, after: CpuSample) -> float:
    """How many cores other processes kept busy between two samples."""
    others = (after.busy_s - before.busy_s) - (after.own_s - before.own_s)
    return max(0.0, others / max(after.wall_s - before.wall_s, 1e-9))


def threads_for(others: float, cores: int, limit: int) -> int:
    """The torch threads to run: the cores the others left (rounded), at least one, at most `limit`."""
    return max(1, min(limit, round(cores - others)))


STRICT_MKL = "AUTO,STRICT"


class _Adaptive:
    """The running choice: whether to adapt, the last sample, the most threads allowed and the count last set."""

    def __init__(self) -> None:
        self.cores = cores()
        self.on = False
        self.last: CpuSample | None = None
        self.limit: int | None = None
        self.chosen: int | None = None
        self.lock = threading.Lock()  # forward passes in several threads adapt one count

    def start(self) -> None:
        self.last = sample(self.cores)
        self.on, self.chosen = self.last is not None, None

    def step(self) -> None:
        import torch

        with self.lock:
            last = self.last
            if not self.on or last is None or time.monotonic() - last.wall_s < INTERVAL_S:
                return
            current = torch.get_num_threads()
            if current != self.chosen or self.limit is None:  # first look, or someone set torch's count: the new most
                self.limit = current
            after = sample(self.cores)
            if after is None:  # /proc/stat no longer readable: stop adapting
                self.on = False
                return
            count = threads_for(others_cores(last, after), len(self.cores), self.limit)
            self.last = after
            if count != current:
                torch.set_num_threads(count)
            self.chosen = count

    def pin(self, count: int) -> None:
        import torch

        with self.lock:
            self.on = False
            torch.set_num_threads(count)


_STATE = _Adaptive()


def adapt() -> None:
    """Before a forward pass: where `set_threads("auto")` asked for it, give torch the cores other processes
    left free (re-measured every INTERVAL_S); otherwise nothing."""
    _STATE.step()


def adapting() -> bool:
    """Whether `set_threads("auto")` (or the program) has threads adapt before each forward pass."""
    return _STATE.on


def set_threads(count: int | str) -> None:
    """Set torch's CPU threads: adapt them to the idle cores, or pin a count. Without a call, tv_lens leaves them alone.

    For float32 results with the same bits at any thread count, start Python with `MKL_CBWR=AUTO,STRICT`
    in the environment (MKL reads it once); "auto" warns where it is not set.

    Args:
        count: "auto": from now on, before each forward pass and model load (re-measured at most every
            0.5 s), run as many threads as other processes leave cores idle, at most torch's own count (as
            it was, or as `torch.set_num_threads` later sets it); nothing adapts where /proc/stat does not
            exist. A number: run exactly that many, no adapting.

    Raises:
        TvLensError: neither "auto" nor a whole number of at least 1.
    """
    if count == "auto":
        if not strict_mkl():
            warnings.warn(f"MKL_CBWR is not {STRICT_MKL}: float32 results may change in their last bits as the "
                          f"thread count adapts; set MKL_CBWR={STRICT_MKL} in the environment before starting "
                          "Python for results independent of the count", stacklevel=2)
        with _STATE.lock:
            _STATE.start()
        return
    if isinstance(count, bool) or not isinstance(count, int):
        raise TvLensError(f"threads must be 'auto' or a whole number of threads, got {count!r}")
    if count < 1:
        raise TvLensError(f"threads must be at least 1, got {count}")
    _STATE.pin(count)


def strict_mkl() -> bool:
    """Whether MKL runs (or will run) in its strict reproducible mode, or torch has no MKL to worry about."""
    import torch

    return not torch.backends.mkl.is_available() or "STRICT" in os.environ.get("MKL_CBWR", "").upper()


def program_defaults() -> None:
    """The `tv-lens` program's own process settings, before it loads torch: MKL_CBWR=AUTO,STRICT (float32
    matrix products with the same bits at any thread count), OMP_WAIT_POLICY=passive where threads cannot
    adapt (no /proc/stat), each unless set already; then threads that adapt. Never called by the library."""
    os.environ.setdefault("MKL_CBWR", STRICT_MKL)
    if "torch" not in sys.modules and sample() is None:
        os.environ.setdefault("OMP_WAIT_POLICY", "passive")
    with _STATE.lock:
        _STATE.start()
