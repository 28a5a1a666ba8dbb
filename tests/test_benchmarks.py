"""Each benchmark runs end to end on a tiny model and prints its figures (timings are not asserted). Those that
start fresh interpreters (several seconds of imports each) are in the slow tier."""

import runpy
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
TINY = ["--model", "tiny-llama", "--tasks", "next_letter"]


def slow(*case):
    return pytest.param(*case, marks=pytest.mark.slow)


@pytest.mark.parametrize("script, args, expected", [
    ("main_experiment.py", TINY, ["| next_letter |", "tokens/s", "peak RSS"]),
    ("task_level.py", TINY + ["--n-test", "4", "--n-dev", "4", "--k", "2"], ["task-level TV", "| **mean** |"]),
    ("serving.py", TINY + ["--n-test", "4", "--n-dev", "4", "--k", "2", "--queries", "2", "--batch-sizes", "3"],
     ["| 1 |", "| 3 |", "Floor: a forward of one token takes", "Tokens per query"]),
    slow("load.py", ["--models", "tiny-llama"], ["tiny-llama      cold", "tiny-llama      warm"]),
    ("faults.py", ["--groups", "vectors", "tasks", "cli"], ["clear error  vector tensor NaN", "crash 0, differing 0"]),
    ("faults.py", ["--groups", "text", "misuse"],
     ["recovered    evaluate of 27 pairs, one of 10,000 characters", "clear error  Settings(n_test=0)",
      "crash 0, differing 0"]),
    slow("scale.py", ["--model", "tiny-llama", "--task", "next_letter", "--n-baseline", "4", "--n-dev", "4",
                      "--n-test", "4", "--precision-models", "tiny-gemma", "--precision-tasks", "next_letter"],
         ["| whole, CPU | 0 |", "| half the layers on disk | 2 |", "| tiny-gemma | next_letter |"]),
    slow("threads.py", ["--model", "tiny-llama", "--task", "next_letter", "--n", "1", "--conditions", "quiet",
                        "--repeats", "1", "--rounds", "2"],
         ["| torch default |", "| 1 thread | 1 |", "| tv_lens default (adapts) |",
          "| tv_lens default, MKL not strict |", "x | "]),
    slow("quick.py", ["--model", "tiny-llama", "--threads", "1"],
         ["| main_table |", "| function_vectors |", "| figures |", "| **total** (interpreter start and imports"]),
])
def test_benchmark_runs_on_a_tiny_model(script, args, expected, monkeypatch, capsys, one_thread, tmp_path):
    monkeypatch.setenv("TV_LENS_CACHE", str(tmp_path))
    monkeypatch.setattr(sys, "argv", [script, *args])
    runpy.run_path(str(BENCHMARKS / script), run_name="__main__")
    out = capsys.readouterr().out
    for text in expected:
        assert text in out


def test_serving_refuses_batches_larger_than_the_test_items(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["serving.py", *TINY, "--n-test", "4", "--batch-sizes", "8"])
    with pytest.raises(SystemExit):
        runpy.run_path(str(BENCHMARKS / "serving.py"), run_name="__main__")
