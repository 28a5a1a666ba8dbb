"""tv_lens's CPU thread default, chosen by measurement (benchmarks/threads.py): one torch thread per core
unless other jobs already fill every core, and OpenMP threads that sleep instead of spinning while they wait.

torch runs one OpenMP thread per core and lets a waiting thread spin before it sleeps; on a CPU shared
with other jobs these threads fight the jobs and each other, and small forwards run several times slower.
OpenMP reads its settings once, when torch loads it, so `import tv_lens` writes them into the environment
before torch is imported (children inherit them); a setting already in the environment is kept, and
nothing changes if torch was imported first. `--threads N` on every command overrides the count.
"""

from __future__ import annotations

import os
import sys


def cpu_count() -> int:
    """The cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def idle_cores(cores: int | None = None) -> int:
    """All cores, less those by which the 1-minute load average exceeds them (at least one). A load up to
    the core count may be this user's own last command, and sleeping threads cost little beside it;
    beyond it, other jobs are sure to compete for every core."""
    cores = cores or cpu_count()
    try:
        excess = max(0.0, os.getloadavg()[0] - cores)
    except (AttributeError, OSError):
        return cores
    return max(1, min(cores, round(cores - excess)))


def set_thread_default() -> None:
    """OMP_WAIT_POLICY=passive and OMP_NUM_THREADS=idle cores, unless set or too late (torch imported)."""
    if "torch" in sys.modules:
        return
    os.environ.setdefault("OMP_WAIT_POLICY", "passive")
    os.environ.setdefault("OMP_NUM_THREADS", str(idle_cores()))
