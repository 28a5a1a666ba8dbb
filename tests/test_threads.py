"""The CPU thread default: every core unless the load average exceeds them, passive OpenMP waiting, set before torch
loads and never over a choice already made."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tv_lens import threads

ROOT = Path(__file__).parents[1]
REPORT = "import os, torch; print(os.environ.get('OMP_WAIT_POLICY'), os.environ.get('OMP_NUM_THREADS'), " \
         "torch.get_num_threads())"


@pytest.mark.parametrize("load, idle", [(0.0, 4), (1.2, 4), (4.0, 4), (5.2, 3), (7.0, 1), (9.0, 1)])
def test_threads_drop_only_when_the_load_exceeds_the_cores(load, idle, monkeypatch):
    monkeypatch.setattr(os, "getloadavg", lambda: (load, load, load))
    assert threads.idle_cores(cores=4) == idle


def run(code: str, **env: str) -> list[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("OMP_")}
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env={**clean, **env}, capture_output=True,
                          text=True, check=True)
    return done.stdout.split()


def test_import_sets_the_default_before_torch_loads():
    policy, count, torch_threads = run("import tv_lens; " + REPORT)
    assert policy == "passive" and 1 <= int(count) <= threads.cpu_count() and int(torch_threads) == int(count)


def test_a_setting_in_the_environment_is_kept():
    assert run("import tv_lens; " + REPORT, OMP_NUM_THREADS="1", OMP_WAIT_POLICY="active") == ["active", "1", "1"]


def test_nothing_changes_when_torch_was_imported_first():
    assert run("import torch, tv_lens; " + REPORT)[:2] == ["None", "None"]
