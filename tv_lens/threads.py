"""tv_lens's CPU threads, chosen by measurement (benchmarks/threads.py): torch's spinning threads on every
core while the machine is otherwise idle, fewer threads as soon as other processes take cores.

torch runs one OpenMP thread per core and lets a waiting thread spin before it sleeps. On an idle 2-core
machine that is much faster than one thread (1.35x to 1.6x); beside one CPU-bound job the spinning
threads fight it and run about 2x slower than one thread. OpenMP's passive wait policy avoids the fight but
loses the speed. So before each forward pass and model load (`adapt`, at most every `INTERVAL_S`) tv_lens
measures the cores other processes used since it last looked (/proc/stat less this process's CPU time)
and gives torch the cores they left. The count torch is set to (its default, OMP_NUM_THREADS,
`torch.set_num_threads`) is the most tv_lens uses; `set_threads(n)` (`--threads N` on every command) pins
exactly n. Where /proc/stat does not exist (macOS, Windows) `import tv_lens` sets OMP_WAIT_POLICY=passive
instead, before torch loads. MKL splits the sums of some matrix products between threads, which changes
their last bits with the thread count; `import tv_lens` asks MKL for its strict reproducible mode, in which
float32 results on x86 CPUs do not depend on the count (it must come before the first matrix product).
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass

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


class _Adaptive:
    """The running choice: the last sample, the most threads allowed and the count last set."""

    def __init__(self) -> None:
        self.cores = cores()
        self.last = sample(self.cores)
        self.on = self.last is not None
        self.limit: int | None = None
        self.chosen: int | None = None

    def step(self) -> None:
        import torch

        now = time.monotonic()
        if not self.on or now - self.last.wall_s < INTERVAL_S:
            return
        current = torch.get_num_threads()
        if current != self.chosen:  # first look, or someone set torch's count: that is the new most
            self.limit = current
        after = sample(self.cores)
        count = threads_for(others_cores(self.last, after), len(self.cores), self.limit)
        self.last = after
        if count != current:
            torch.set_num_threads(count)
        self.chosen = count

    def pin(self, count: int) -> None:
        import torch

        self.on = False
        torch.set_num_threads(count)


_STATE = _Adaptive()


def adapt() -> None:
    """Before a forward pass: give torch the cores other processes left free (re-measured every INTERVAL_S)."""
    _STATE.step()


def set_threads(count: int) -> None:
    """Run exactly `count` torch threads from now on (no adapting to other processes)."""
    if count < 1:
        raise ValueError(f"threads must be at least 1, got {count}")
    _STATE.pin(count)


def set_thread_default() -> None:
    """MKL_CBWR=AUTO,STRICT, which MKL reads at the first matrix product: float32 matrix products with the same
    bits at any thread count, so that adapting the count never changes a result; and, where threads cannot
    adapt (no /proc/stat), OMP_WAIT_POLICY=passive unless torch is loaded. Values already set are kept."""
    os.environ.setdefault("MKL_CBWR", "AUTO,STRICT")
    if _STATE.on or "torch" in sys.modules:
        return
    os.environ.setdefault("OMP_WAIT_POLICY", "passive")
