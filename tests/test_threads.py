"""The CPU threads, on request (`set_threads`, and the program's defaults): torch's count while the machine is
otherwise idle, the cores other processes left while they run, never more than torch is set to, exactly N when
pinned; the passive fallback without /proc/stat; nothing at all on import."""

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tv_lens import threads
from tv_lens.patching.engine import Run, predict
from tv_lens.threads import CpuSample

ROOT = Path(__file__).parents[1]
HAS_PROC_STAT = threads.sample() is not None


@pytest.mark.parametrize("others, cores, limit, count", [
    (0.0, 2, 2, 2), (0.3, 2, 2, 2), (0.67, 2, 2, 1), (1.0, 2, 2, 1), (2.0, 2, 2, 1),
    (0.0, 8, 8, 8), (1.0, 8, 8, 7), (3.4, 8, 8, 5), (0.0, 8, 4, 4), (7.9, 8, 4, 1),
])
def test_threads_take_the_cores_the_others_left_within_the_limit(others, cores, limit, count):
    assert threads.threads_for(others, cores, limit) == count


def test_other_processes_are_the_busy_time_less_our_own():
    before, after = CpuSample(10.0, 100.0, 5.0), CpuSample(11.0, 101.8, 6.0)  # 1.8 core-s busy, 1.0 ours
    assert threads.others_cores(before, after) == pytest.approx(0.8)
    assert threads.others_cores(before, CpuSample(11.0, 100.9, 6.0)) == 0.0  # tick rounding: never negative


class Clock:
    """Scripted samples, from long ago (so every look is due): each `busy(others)` advances one interval
    in which we used one core."""

    def __init__(self, monkeypatch):
        self.now = CpuSample(time.monotonic() - 1000, 0.0, 0.0)
        monkeypatch.setattr(threads, "sample", lambda on=None: self.now)

    def busy(self, others: float) -> None:
        step = threads.INTERVAL_S
        self.now = CpuSample(self.now.wall_s + step, self.now.busy_s + step * (1 + others), self.now.own_s + step)


@pytest.fixture
def adaptive(monkeypatch):
    """A fresh running choice on two cores, with torch's count restored afterwards."""
    clock, before = Clock(monkeypatch), torch.get_num_threads()
    torch.set_num_threads(2)
    state = threads._Adaptive()
    state.cores, state.last, state.on = frozenset({0, 1}), clock.now, True
    monkeypatch.setattr(threads, "_STATE", state)
    yield clock
    torch.set_num_threads(before)


def test_a_competitor_takes_a_core_and_gives_it_back(adaptive):
    adaptive.busy(0.0)
    threads.adapt()
    assert torch.get_num_threads() == 2
    adaptive.busy(0.7)  # a CPU-bound job arrives and gets its share beside our two spinning threads
    threads.adapt()
    assert torch.get_num_threads() == 1
    adaptive.busy(1.0)
    threads.adapt()
    assert torch.get_num_threads() == 1
    adaptive.busy(0.05)  # it left
    threads.adapt()
    assert torch.get_num_threads() == 2


def test_no_new_look_within_the_interval(adaptive):
    threads._STATE.last = CpuSample(time.monotonic(), 0.0, 0.0)
    adaptive.busy(1.0)
    threads.adapt()
    assert torch.get_num_threads() == 2


def test_a_count_set_by_the_user_is_the_most_used(adaptive):
    adaptive.busy(0.0)
    threads.adapt()
    torch.set_num_threads(1)
    adaptive.busy(0.0)
    threads.adapt()
    assert torch.get_num_threads() == 1


def test_set_threads_pins_the_count(adaptive):
    threads.set_threads(2)
    adaptive.busy(1.0)
    threads.adapt()
    assert torch.get_num_threads() == 2
    with pytest.raises(ValueError, match="at least 1"):
        threads.set_threads(0)


def test_every_forward_pass_adapts(adaptive, tiny_llama):
    adaptive.busy(1.0)
    predict(tiny_llama, [Run(tiny_llama.to_tokens("a b c")[0].tolist())])
    assert torch.get_num_threads() == 1


@pytest.mark.skipif(not HAS_PROC_STAT, reason="no /proc/stat")
def test_a_real_competitor_is_seen():
    competitor = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.5)
        before = threads.sample()
        time.sleep(1.0)
        after = threads.sample()
    finally:
        competitor.kill()
        competitor.wait()
    assert threads.others_cores(before, after) >= 0.5


def run(code: str, **env: str) -> list[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("OMP_", "MKL_"))}
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env={**clean, **env}, capture_output=True,
                          text=True, check=True)
    return done.stdout.split()


REPORT = ("import os, torch; "
          "print(os.environ.get('OMP_WAIT_POLICY'), os.environ.get('MKL_CBWR'), torch.get_num_threads())")


def test_import_sets_nothing():
    assert run("import tv_lens; " + REPORT, OMP_NUM_THREADS="2") == ["None", "None", "2"]


def test_the_program_takes_its_own_process_over():
    """MKL's strict mode, threads that adapt, and (only where they cannot adapt) the passive wait policy."""
    code = "from tv_lens import threads; threads.program_defaults(); print(threads.adapting()); " + REPORT
    adapting, policy, strict, count = run(code)
    assert adapting == str(HAS_PROC_STAT) and policy == ("None" if HAS_PROC_STAT else "passive")
    assert strict == "AUTO,STRICT" and int(count) >= 1
    assert run(code, MKL_CBWR="COMPATIBLE")[2] == "COMPATIBLE"  # a value already set is kept


def test_the_cli_adapts_unless_pinned(adaptive, monkeypatch):
    from tv_lens.cli.options import apply_run_options

    monkeypatch.delenv("MKL_CBWR", raising=False)  # the program sets it in its process: here, the test's
    threads.set_threads(2)
    apply_run_options(argparse.Namespace(threads=None, quiet=False))
    assert threads.adapting()
    apply_run_options(argparse.Namespace(threads=1, quiet=False))
    assert not threads.adapting() and torch.get_num_threads() == 1


def test_without_proc_stat_waiting_threads_sleep():
    code = "from tv_lens import threads; threads.PROC_STAT = '/nonexistent'; threads.program_defaults(); " \
           "import os; print(os.environ.get('OMP_WAIT_POLICY'), threads.adapting())"
    assert run(code) == ["passive", "False"]
    assert run(code, OMP_WAIT_POLICY="active") == ["active", "False"]


def test_python_asks_for_adapting_threads_and_is_told_about_strict_mode(adaptive, monkeypatch):
    monkeypatch.setenv("MKL_CBWR", "AUTO,STRICT")
    threads.set_threads(1)
    assert not threads.adapting()
    threads.set_threads("auto")
    assert threads.adapting()
    monkeypatch.delenv("MKL_CBWR")
    if torch.backends.mkl.is_available():
        with pytest.warns(UserWarning, match="MKL_CBWR=AUTO,STRICT in the environment before starting Python"):
            threads.set_threads("auto")
    for bad in ("many", 0, 1.5, True):
        with pytest.raises(ValueError, match="threads must be"):
            threads.set_threads(bad)


GEMM = "import torch; torch.manual_seed(0); a, b = torch.randn(30, 2048), torch.randn(2048, 640); " \
       "torch.set_num_threads(1); x = a @ b; torch.set_num_threads(2); print(torch.equal(x, a @ b))"


@pytest.mark.skipif(len(threads.cores()) < 2 or not torch.backends.mkl.is_available(), reason="needs MKL, 2 cores")
def test_matrix_products_have_the_same_bits_at_any_thread_count_in_the_program():
    """A product whose sums MKL splits by thread on this machine's CPUs unless told to be strict."""
    assert run("from tv_lens import threads; threads.program_defaults(); " + GEMM) == ["True"]
