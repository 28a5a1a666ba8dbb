"""Files as tv_lens writes and reads them (issue 22): atomic writes that name the file when they fail and never
follow a symlink, bounded reads of regular files only, results of one configuration in figures and tables, and
names inside files that never choose what to load or where to write."""

import errno
import json
import os
import shutil
import signal
from contextlib import contextmanager
from pathlib import Path

import pytest

from analyses import reproduce
from analyses.common import default_out
from figures import make as figures
from tv_lens.cli.main import main
from tv_lens.files import (
    FileReadError,
    FileWriteError,
    read_regular,
    safe_name,
    write_atomically,
    writing_atomically,
)
from tv_lens.runs.reading import Configuration, read_run
from tv_lens.runs.store import ResultsError, load_results, record_digest
from tv_lens.settings import Settings

PROTOCOL = reproduce.Protocol(main=Settings(n_baseline=4, n_dev=4, n_test=4), k=5,
                              tasks=("next_letter", "to_upper"))
EXPERIMENTS = ["main_table", "layer_sweep", "top_tokens"]

pytestmark = pytest.mark.usefixtures("one_thread")


@contextmanager
def deadline(seconds: int = 20):
    """Fail instead of hanging (a read of a FIFO would block forever)."""
    def expired(*_):
        raise TimeoutError(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def fail_with(code: int):
    def fail(*args, **kwargs):
        raise OSError(code, os.strerror(code))
    return fail


# 1. Writes: atomic, one line naming the file on failure, never through a symlink.

def test_a_full_disk_names_the_file_and_leaves_the_old_one(tmp_path, monkeypatch):
    target = write_atomically(tmp_path / "report.html", b"old")
    monkeypatch.setattr("tv_lens.files.os.fsync", fail_with(errno.ENOSPC))
    with pytest.raises(FileWriteError) as err:
        write_atomically(target, b"new" * 1000)
    assert str(err.value) == (f"cannot write {target} (No space left on device): free some space there, or "
                              f"write elsewhere")
    assert target.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["report.html"]


def test_a_read_only_place_names_the_file(tmp_path, monkeypatch):
    monkeypatch.setattr("tv_lens.files.os.open", fail_with(errno.EROFS))
    with pytest.raises(FileWriteError, match=f"cannot write {tmp_path / 'x.md'} \\(Read-only file system\\): "
                                             "choose a writable place"):
        write_atomically(tmp_path / "x.md", b"x")


def test_files_written_by_another_writer_are_renamed_into_place_whole_or_not_at_all(tmp_path):
    outside = tmp_path / "outside"
    outside.write_text("keep")
    (tmp_path / "a.png").symlink_to(outside)
    with writing_atomically([tmp_path / "a.png", tmp_path / "b.png"]) as (a, b):
        assert a.suffix == b.suffix == ".png" and a.parent == tmp_path and a.read_bytes() == b""
        a.write_bytes(b"A")
        b.write_bytes(b"B")
    assert (tmp_path / "a.png").read_bytes() == b"A" and not (tmp_path / "a.png").is_symlink()
    assert outside.read_text() == "keep"
    with pytest.raises(RuntimeError), writing_atomically([tmp_path / "a.png", tmp_path / "c.png"]) as (a, c):
        a.write_bytes(b"half")
        raise RuntimeError("the writer died")
    assert (tmp_path / "a.png").read_bytes() == b"A" and sorted(p.name for p in tmp_path.iterdir()) == [
        "a.png", "b.png", "outside"]


def test_a_writer_that_leaves_its_file_empty_is_a_write_error(tmp_path):
    with pytest.raises(FileWriteError, match="a.png .the writer left it empty"), \
            writing_atomically([tmp_path / "a.png"]):
        pass
    assert list(tmp_path.iterdir()) == []


# 2. Reads: regular files only, bounded.

@pytest.mark.parametrize("plant, says", [
    (lambda p: os.mkfifo(p), "is a FIFO, not a regular file"),
    (lambda p: p.symlink_to("/dev/zero"), "is a symlink, not a regular file"),
    (lambda p: p.mkdir(), "is a directory, not a regular file"),
    (lambda p: p.write_bytes(b"x" * 101), r"is larger \(101 bytes\) than any file tv_lens writes there \(100\)"),
])
def test_only_regular_files_of_bounded_size_are_read(tmp_path, plant, says):
    path = tmp_path / "unit.json"
    plant(path)
    with deadline(), pytest.raises(FileReadError, match=says):
        read_regular(path, 100)


def test_a_symlink_is_read_through_only_when_asked_and_only_to_a_regular_file(tmp_path):
    (tmp_path / "real").write_bytes(b"data")
    (tmp_path / "link").symlink_to(tmp_path / "real")
    (tmp_path / "zero").symlink_to("/dev/zero")
    assert read_regular(tmp_path / "link", 10, follow=True) == b"data"
    with deadline(), pytest.raises(FileReadError, match="is a character device"):
        read_regular(tmp_path / "zero", 10, follow=True)


@pytest.mark.parametrize("text, name", [("gemma-3-270m", "gemma-3-270m"), ("..", "model"), (".", "model"),
                                        ("", "model"), (".hidden", "model_.hidden"), ("a/b c", "a_b_c")])
def test_safe_names_are_one_harmless_path_component(text, name):
    assert safe_name(text) == name


def test_the_default_run_directory_never_climbs_out_of_runs(tmp_path, monkeypatch):
    (tmp_path / "mymodel" / "sub").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    assert default_out("mymodel/sub/..") == Path("runs/mymodel")
    assert default_out(str(tmp_path / "mymodel" / "sub" / "..")) == Path("runs/mymodel")
    assert default_out("..", quick=True).parent == Path("runs")
    assert default_out("org/some-model") == Path("runs/some-model")


# 3. Results of one configuration: identity, sources, derived numbers.

@pytest.fixture(scope="module")
def runs(tiny_llama, tiny_gemma, tmp_path_factory):
    """Finished tiny runs: tiny-llama with seeds 0 and 1, tiny-gemma with seed 0."""
    made = {}
    for name, model, seed in (("llama0", tiny_llama, 0), ("llama1", tiny_llama, 1), ("gemma0", tiny_gemma, 0)):
        out = tmp_path_factory.mktemp(name)
        reproduce.reproduce(model, out, protocol=PROTOCOL, seed=seed, progress=lambda m: None,
                            experiments=EXPERIMENTS)
        made[name] = out
    return made


def copy_run(runs, name, tmp_path) -> Path:
    return Path(shutil.copytree(runs[name], tmp_path / name))


def test_a_run_directory_reads_back_whole(runs):
    run = read_run(runs["llama0"])
    assert list(run.results) == EXPERIMENTS and run.left_out == {}
    assert run.configuration.seed == 0 and run.configuration.model == "tiny-llama"


@pytest.mark.parametrize("other", ["gemma0", "llama1"])
def test_another_configurations_main_table_copied_in_is_left_out_never_shown_as_this_runs(runs, tmp_path, other,
                                                                                          capsys):
    run_dir = copy_run(runs, "llama0", tmp_path)
    shutil.copy(runs[other] / "main_table" / "results.json", run_dir / "main_table" / "results.json")
    run = read_run(run_dir)
    assert "main_table" not in run.results and "no longer holds as it was" in run.left_out["main_table"]
    assert set(run.results) == {"layer_sweep", "top_tokens"} and run.configuration.seed == 0
    written = figures.make(run_dir, png=False)
    err = capsys.readouterr().err
    assert err.count("left out: ") == 1 and err.count("\n") == 1
    report = written[-1].read_text()
    foreign = load_results(runs[other] / "main_table")
    assert foreign.model.fingerprint not in report or foreign.model.fingerprint == run.configuration.fingerprint
    assert "1. Main table" not in report and "2. Layer sweep" in report


def test_another_configurations_whole_analysis_copied_in_is_left_out(runs, tmp_path):
    run_dir = copy_run(runs, "llama0", tmp_path)
    shutil.rmtree(run_dir / "top_tokens")
    shutil.copytree(runs["gemma0"] / "top_tokens", run_dir / "top_tokens")
    shutil.copytree(runs["gemma0"] / "main_table" / "units", run_dir / "top_tokens" / "units")  # harmless extra
    run = read_run(run_dir)
    assert set(run.results) == {"main_table", "layer_sweep"}
    assert "top_tokens" in run.left_out and "tiny-gemma" not in str(run.configuration)


def test_results_of_another_seed_left_behind_are_left_out_and_the_run_just_made_wins(runs, tiny_llama, tmp_path):
    run_dir = copy_run(runs, "llama0", tmp_path)
    reproduce.reproduce(tiny_llama, run_dir, protocol=PROTOCOL, seed=1, progress=lambda m: None,
                        experiments=["main_table"])  # seed 1 over seed 0, main table only
    run = read_run(run_dir)
    assert set(run.results) == {"main_table"} and run.configuration.seed == 1
    assert all("no longer holds" in why for why in run.left_out.values()) and len(run.left_out) == 2
    like = Configuration.of_model(tiny_llama, 0)
    assert read_run(run_dir, like=like).results == {}


def test_a_damaged_or_edited_results_file_is_refused_in_one_line(runs, tmp_path):
    run_dir = copy_run(runs, "llama0", tmp_path)
    path = run_dir / "main_table" / "results.json"
    data = json.loads(path.read_text())
    data["tasks"][0]["category"] = "edited"
    path.write_text(json.dumps(data))
    with pytest.raises(ResultsError, match="digest does not match its contents") as err:
        load_results(path)
    assert "\n" not in str(err.value)
    data = json.loads((runs["llama0"] / "main_table" / "results.json").read_text())
    data["summary"]["overall"]["icl"]["value"] = 0.875  # a summary edited, its digest recomputed
    data["digest"] = record_digest(data)
    path.write_text(json.dumps(data))
    with pytest.raises(ResultsError, match="summary differs from what its tasks' per-item hits give"):
        load_results(path)
    data = json.loads((runs["llama0"] / "main_table" / "results.json").read_text())
    data["schema_version"] = 2  # as an older tv_lens wrote it: no sources, no digest
    del data["sources"], data["digest"]
    path.write_text(json.dumps(data))
    with pytest.raises(ResultsError, match="schema version 2 results lack the identity"):
        load_results(path)


def test_an_edited_unit_is_recomputed_and_the_tables_show_its_real_numbers(runs, tiny_llama, tmp_path):
    run_dir = copy_run(runs, "llama0", tmp_path)
    path = run_dir / "main_table" / "units" / "next_letter.json"
    record = json.loads(path.read_text())
    icl = record["result"]["icl"]
    icl["correct"] = icl["total"] - icl["correct"] if icl["total"] != 2 * icl["correct"] else 0
    record["digest"] = record_digest(record)
    path.write_text(json.dumps(record))
    lines = []
    outcomes = reproduce.reproduce(tiny_llama, run_dir, protocol=PROTOCOL, progress=lines.append,
                                   experiments=["main_table"])
    assert outcomes["main_table"].computed == ["next_letter"]
    assert any("differs from its per-item hits" in line and "recomputing" in line for line in lines)
    assert load_results(run_dir / "main_table").tasks[0].icl == load_results(runs["llama0"] / "main_table").tasks[0].icl


def test_a_fifo_or_endless_results_file_is_left_out_without_hanging(runs, tmp_path):
    run_dir = copy_run(runs, "llama0", tmp_path)
    (run_dir / "layer_sweep" / "results.json").unlink()
    os.mkfifo(run_dir / "layer_sweep" / "results.json")
    (run_dir / "top_tokens" / "results.json").unlink()
    (run_dir / "top_tokens" / "results.json").symlink_to("/dev/zero")
    with deadline():
        run = read_run(run_dir)
    assert set(run.results) == {"main_table"}
    assert "a FIFO" in run.left_out["layer_sweep"] and "a symlink" in run.left_out["top_tokens"]


# 1 (figures). Figures and report: atomic, never through a symlink, one line on a full disk.

def test_figures_replace_a_planted_symlink_and_never_write_through_it(runs, tmp_path):
    run_dir = copy_run(runs, "llama0", tmp_path)
    outside = tmp_path / "outside.html"
    outside.write_text("keep")
    (run_dir / "figures").mkdir()
    (run_dir / "figures" / "report.html").symlink_to(outside)
    figures.make(run_dir, png=False)
    assert outside.read_text() == "keep" and not (run_dir / "figures" / "report.html").is_symlink()


def test_a_full_disk_while_writing_figures_is_one_line_naming_the_file_and_leaves_no_half_page(runs, tmp_path,
                                                                                                monkeypatch, capsys):
    run_dir = copy_run(runs, "llama0", tmp_path)
    figures.make(run_dir, png=False)
    before = {p.name: p.read_bytes() for p in (run_dir / "figures").iterdir()}
    real = os.fsync
    calls = []

    def fsync(fd):
        calls.append(fd)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real(fd)

    monkeypatch.setattr("tv_lens.files.os.fsync", fsync)
    code = main(["figures", str(run_dir), "--no-png"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "No space left on device" in err
    assert f"cannot write {run_dir / 'figures' / 'layer_sweep.html'}" in err
    after = {p.name: p.read_bytes() for p in (run_dir / "figures").iterdir()}
    assert after.keys() == before.keys() and after["layer_sweep.html"] == before["layer_sweep.html"]


class Killed(BaseException):
    """The process dies here."""


def test_a_kill_while_writing_figures_leaves_each_page_whole(runs, tmp_path, monkeypatch):
    run_dir = copy_run(runs, "llama0", tmp_path)
    real = os.replace

    def replace(*args):
        if Path(args[1]).name == "layer_sweep.html":
            raise Killed
        return real(*args)

    monkeypatch.setattr("tv_lens.files.os.replace", replace)
    with pytest.raises(Killed):
        figures.make(run_dir, png=False)
    pages = list((run_dir / "figures").iterdir())
    assert [p.name for p in pages] == ["main_table.html"] and pages[0].stat().st_size > 1_000_000


def test_pngs_are_rendered_to_temporary_names_and_renamed(runs, tmp_path, monkeypatch):
    run_dir = copy_run(runs, "llama0", tmp_path)
    monkeypatch.setattr(figures, "find_browser", lambda: "/usr/bin/chromium")
    rendered = []

    def write_images(figs, paths, **sizes):
        for path in paths:
            assert Path(path).name.startswith(".") and Path(path).suffix == ".png"
            Path(path).write_bytes(b"\x89PNG")
            rendered.append(path)

    monkeypatch.setattr(figures.pio, "write_images", write_images)
    written = figures.make(run_dir)
    pngs = [p for p in written if p.suffix == ".png"]
    assert len(pngs) == len(rendered) == 3 and all(p.read_bytes() == b"\x89PNG" for p in pngs)
    assert not [p for p in (run_dir / "figures").iterdir() if p.name.startswith(".")]


# 8. A model named inside a file is loaded only when it is embedded (or tiny) or the user names it.

@pytest.mark.parametrize("named", ["gpt2", "/abs/dir/of/a/model", "org/model"])
def test_apply_loads_no_model_a_vector_file_names_unless_it_is_embedded(tiny_llama, tmp_path, capsys, monkeypatch,
                                                                         named):
    from tv_lens.task_vectors.learning import learn
    from tv_lens.task_vectors.serving import TaskVectorSolver

    theta = learn(tiny_llama, [("ab", "c"), ("de", "f")], ["gh", "ij"], layer=1, task="toy")
    theta.model = named
    path = theta.save(tmp_path / "v.safetensors")
    monkeypatch.setattr("tv_lens.models.loading.load_model", lambda *a, **k: pytest.fail("loaded a model"))
    assert main(["apply", str(path), "kl"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"was learned on {named!r}, which is not an embedded model" in err
    with pytest.raises(ValueError, match="loads it only when you name it"):
        TaskVectorSolver.from_file(path)


def test_apply_loads_an_embedded_or_tiny_model_a_vector_file_names(tiny_llama, tmp_path, capsys):
    from tv_lens.task_vectors.learning import learn

    theta = learn(tiny_llama, [("ab", "c"), ("de", "f")], ["gh", "ij"], layer=1, task="toy")
    path = theta.save(tmp_path / "v.safetensors")
    assert main(["apply", str(path), "kl"]) == 0 and capsys.readouterr().out.startswith("kl -> ")
