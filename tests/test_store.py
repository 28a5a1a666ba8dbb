"""Results and vector files that cannot lie: each finding of the fault-injection pass (issue 13) as a
regression test, property tests over random bytes and JSON, claims, and shards over one run directory."""

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from analyses import main_table, reproduce
from tv_lens.claims import ClaimError
from tv_lens.files import check_writable_folder, write_atomically
from tv_lens.runs.records import TaskQueries, results_from_dict
from tv_lens.runs.store import (
    JSON_LIMIT,
    ResultsError,
    Shard,
    Store,
    load_results,
    record_digest,
)
from tv_lens.settings import Settings
from tv_lens.task_vectors.vector import TaskVector, VectorFileError
from tv_lens.tasks import get_task

ROOT = Path(__file__).parents[1]
TASKS = ["next_letter", "to_upper"]
SMALL = Settings(n_baseline=4, n_dev=4, n_test=4)
MODEL = {"model": "m", "fingerprint": "f", "n_layers": 3, "d_model": 4}

pytestmark = pytest.mark.usefixtures("one_thread")


def fake_store(folder: Path, seed: int = 0, lines: list | None = None, analysis: str = "a") -> Store:
    """A store with a made-up model header (no model needed); its notices go to `lines`."""
    return Store(folder, analysis, MODEL, {"n": 1}, seed, progress=(lines if lines is not None else []).append)


def run_main(model, out, seed=0, lines=None):
    return main_table.run(model, out, TASKS, SMALL, seed, progress=(lines if lines is not None else []).append)


def comparable(path: Path):
    """A results file without the time it was written, the timings of its work and the digests covering them."""
    def strip(value):
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items() if k not in ("written_at", "timings", "digest")}
        return [strip(v) for v in value] if isinstance(value, list) else value

    return strip(json.loads(path.read_text()))


def units(folder: Path) -> Path:
    return folder / "main_table" / "units"


# 1. A kill between a unit's two writes, and concurrent runs with other seeds.

def test_a_kill_between_the_two_writes_never_reuses_the_other_runs_tensors(tiny_llama, tmp_path):
    clean0, clean1, run = tmp_path / "clean0", tmp_path / "clean1", tmp_path / "run"
    run_main(tiny_llama, clean0, seed=0)
    run_main(tiny_llama, clean1, seed=1)
    shutil.copytree(clean0, run)
    seed1_tensors = next(units(clean1).glob(f"{TASKS[0]}~*.safetensors"))
    # A seed-1 run into the seed-0 directory, killed after its tensor file and before its record:
    shutil.copy(seed1_tensors, units(run) / seed1_tensors.name)
    resumed = run_main(tiny_llama, run, seed=0)
    assert resumed.reused == TASKS and comparable(run / "main_table/results.json") == comparable(
        clean0 / "main_table/results.json")
    # The same kill under the old layout, where the tensor file had one name and was replaced in place:
    referenced = json.loads((units(run) / f"{TASKS[0]}.json").read_text())["tensors"]["file"]
    assert referenced != seed1_tensors.name
    shutil.copy(seed1_tensors, units(run) / referenced)
    lines = []
    again = run_main(tiny_llama, run, seed=0, lines=lines)
    assert again.computed == [TASKS[0]] and again.reused == TASKS[1:]
    assert any("does not match the digest" in line and "recomputing" in line for line in lines)
    assert comparable(run / "main_table/results.json") == comparable(clean0 / "main_table/results.json")
    units0, _ = main_table.task_results(tiny_llama, run, [get_task(TASKS[0])], SMALL, 0, lambda m: None)
    units1, _ = main_table.task_results(tiny_llama, clean1, [get_task(TASKS[0])], SMALL, 1, lambda m: None)
    assert not torch.equal(units0[0].tensors["mean_theta"], units1[0].tensors["mean_theta"])


def test_runs_with_other_seeds_in_one_directory_each_get_their_own_results(tmp_path):
    a, b = fake_store(tmp_path, seed=0), fake_store(tmp_path, seed=1)
    for _ in range(2):
        for store, value in ((a, 0.0), (b, 1.0)):
            unit = store.get("t", lambda v=value: ({"seed": v}, {"x": torch.full((2,), v)}), needs=["x"])
            assert unit.result == {"seed": value} and torch.equal(unit.tensors["x"], torch.full((2,), value))
    assert len(list((tmp_path / "a" / "units").glob("t~*.safetensors"))) == 1


def test_a_unit_being_computed_elsewhere_is_waited_for_not_redone(tmp_path):
    lines = []
    first, second = fake_store(tmp_path), fake_store(tmp_path, lines=lines)
    started = threading.Event()

    def slow():
        started.set()
        time.sleep(0.5)
        return {"by": "first"}, None

    worker = threading.Thread(target=first.get, args=("t", slow))
    worker.start()
    started.wait()
    unit = second.get("t", lambda: pytest.fail("computed twice"))
    worker.join()
    assert unit.result == {"by": "first"} and second.reused == ["t"] and first.computed == ["t"]
    assert lines == [f"[a] unit t is being computed by pid {os.getpid()} on {os.uname().nodename}: waiting for it"]


# 2. No write through a planted symlink.

def test_writes_never_follow_a_planted_symlink(tmp_path, monkeypatch):
    outside = tmp_path / "outside.txt"
    outside.write_text("keep")
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / f".results.json.{os.getpid()}.tmp").symlink_to(outside)  # the old predictable name
    names = iter(["aaaa", "bbbb"])
    monkeypatch.setattr("tv_lens.files.secrets.token_hex", lambda n: next(names))
    (folder / ".results.json.aaaa.tmp").symlink_to(outside)  # a guessed random name
    write_atomically(folder / "results.json", b"new")
    assert outside.read_text() == "keep" and (folder / "results.json").read_bytes() == b"new"
    (folder / "target").symlink_to(outside)  # the target itself: replaced, not followed
    monkeypatch.undo()
    write_atomically(folder / "target", b"new")
    assert outside.read_text() == "keep" and not (folder / "target").is_symlink()


def test_a_fifo_planted_as_a_claim_file_is_a_one_line_error_not_a_hang(tmp_path):
    store = fake_store(tmp_path)
    (tmp_path / "a" / "units").mkdir(parents=True)
    os.mkfifo(tmp_path / "a" / "units" / "t.claim")
    with pytest.raises(ClaimError, match="is a FIFO, not a regular file: remove it") as info:
        store.get("t", lambda: ({}, None))
    assert "\n" not in str(info.value)


def test_a_symlink_planted_as_a_claim_file_is_a_one_line_error(tmp_path):
    store = fake_store(tmp_path)
    (tmp_path / "a" / "units").mkdir(parents=True)
    (tmp_path / "a" / "units" / "t.claim").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(ClaimError, match="is a symlink; remove it") as info:
        store.get("t", lambda: ({}, None))
    assert "\n" not in str(info.value) and not (tmp_path / "elsewhere").exists()


# 3. A damaged unit is recomputed with one line, never reused, never fatal.

def damage_tensor_truncated(folder):
    path = next(units(folder).glob(f"{TASKS[0]}~*.safetensors"))
    path.write_bytes(path.read_bytes()[:50])


def damage_tensor_random(folder):
    next(units(folder).glob(f"{TASKS[0]}~*.safetensors")).write_bytes(os.urandom(300))


def damage_tensor_missing(folder):
    next(units(folder).glob(f"{TASKS[0]}~*.safetensors")).unlink()


def damage_record_not_utf8(folder):
    (units(folder) / f"{TASKS[0]}.json").write_bytes(b"\xff\xfe{" + os.urandom(40))


def damage_record_bad_result(folder):
    """A valid header and digest around a result that is not a main-table row."""
    path = units(folder) / f"{TASKS[0]}.json"
    record = json.loads(path.read_text())
    record["result"]["best_layer"] = 99
    record["result"]["tv"]["correct"] = 1000
    record["digest"] = record_digest(record)
    path.write_text(json.dumps(record))


def damage_record_edited(folder):
    path = units(folder) / f"{TASKS[0]}.json"
    path.write_text(path.read_text().replace('"best_layer": ', '"best_layer": 1'))


def damage_record_icl_edited(folder):
    """The tester's edit: ICL counts changed (their digest recomputed) while the per-item hits stay as they were."""
    path = units(folder) / f"{TASKS[0]}.json"
    record = json.loads(path.read_text())
    icl = record["result"]["icl"]
    icl["correct"] = (icl["correct"] + 1) % (icl["total"] + 1)
    record["digest"] = record_digest(record)
    path.write_text(json.dumps(record))


def damage_record_fifo(folder):
    (units(folder) / f"{TASKS[0]}.json").unlink()
    os.mkfifo(units(folder) / f"{TASKS[0]}.json")


def damage_record_endless(folder):
    (units(folder) / f"{TASKS[0]}.json").unlink()
    (units(folder) / f"{TASKS[0]}.json").symlink_to("/dev/zero")


def damage_record_oversized(folder):
    with open(units(folder) / f"{TASKS[0]}.json", "r+b") as f:
        f.truncate(JSON_LIMIT + 1)  # sparse: no disk used


def damage_tensor_fifo(folder):
    path = next(units(folder).glob(f"{TASKS[0]}~*.safetensors"))
    path.unlink()
    os.mkfifo(path)


@pytest.mark.parametrize("damage, says", [
    (damage_tensor_truncated, "does not match the digest"), (damage_tensor_random, "does not match the digest"),
    (damage_tensor_missing, "cannot be read"), (damage_record_not_utf8, "not a strict UTF-8 JSON record"),
    (damage_record_bad_result, "1000 correct out of 4 is impossible"), (damage_record_edited, "digest does not match"),
    (damage_record_icl_edited, "differs from its per-item hits"), (damage_record_fifo, "a FIFO, not a regular file"),
    (damage_record_endless, "is a symlink, not a regular file"), (damage_record_oversized, "is larger"),
    (damage_tensor_fifo, "a FIFO, not a regular file"),
])
def test_a_damaged_unit_is_recomputed_with_one_line(tiny_llama, tmp_path, damage, says):
    run_main(tiny_llama, tmp_path)
    clean = comparable(tmp_path / "main_table/results.json")
    damage(tmp_path)
    lines = []
    again = run_main(tiny_llama, tmp_path, lines=lines)
    assert again.computed == [TASKS[0]] and again.reused == TASKS[1:]
    notices = [line for line in lines if "recomputing" in line]
    assert len(notices) == 1 and says in notices[0] and f"unit {TASKS[0]}" in notices[0], lines
    assert comparable(tmp_path / "main_table/results.json") == clean
    assert len(list(units(tmp_path).glob(f"{TASKS[0]}~*.safetensors"))) == 1


# 4. Vector metadata is validated on load.

def write_vector(path: Path, meta: dict, tensor=None) -> Path:
    from safetensors.torch import save_file

    tensor = torch.zeros(3, 4) if tensor is None else tensor
    save_file({"vectors": tensor}, str(path), metadata={"format": "pt", "tv_lens": json.dumps(meta)})
    return path


GOOD = {"layer": 1, "model": "m", "fingerprint": "f", "hook": "blocks.{layer}.hook_resid_post", "prompt_format": {},
        "n_shots": 5, "n_contexts": 1, "seed": 0, "task": "t", "versions": {"torch": "2"}, "dev_accuracy": [],
        "schema_version": 1}


@pytest.mark.parametrize("change, tensor, says", [
    ({"layer": True}, None, "'layer' is True"),
    ({"layer": 1.5}, None, "'layer' is 1.5"),
    ({"hook": 5}, None, "'hook' is 5"),
    ({"hook": "blocks.{layer}.attn.hook_pattern"}, None, "not a residual-stream hook"),
    ({"n_contexts": 0}, None, "'n_contexts' is 0"),
    ({"seed": "x"}, None, "'seed'"),
    ({"dev_accuracy": [0.5, 2.0, 0.1]}, None, "'dev_accuracy'"),
    ({"prompt_format": {"example_template": "no fields"}}, None, "'prompt_format'"),
    ({"prompt_format": {"example_template": 3}}, None, "'prompt_format'"),
    ({"versions": {"torch": 2}}, None, "'versions'"),
    ({"schema_version": True}, None, "no valid schema version"),
    ({}, torch.zeros(3, 4, dtype=torch.int32), "dtype int32, not floating point"),
    ({}, torch.zeros(3, 4, dtype=torch.bool), "dtype bool, not floating point"),
    ({}, torch.tensor([[0.0, float("nan"), 0, 0]] * 3), "NaN or infinite"),
    ({}, torch.tensor([[0.0, float("inf"), 0, 0]] * 3), "NaN or infinite"),
    ({}, torch.zeros(3), "no [n_layers, d_model] tensor"),
])
def test_bad_vector_metadata_and_tensors_are_one_line_errors(tmp_path, change, tensor, says):
    path = write_vector(tmp_path / "v.safetensors", {**GOOD, **change}, tensor)
    with pytest.raises(VectorFileError, match=None) as info:
        TaskVector.load(path)
    assert says in str(info.value) and "\n" not in str(info.value)


def test_a_good_vector_file_loads(tmp_path):
    theta = TaskVector.load(write_vector(tmp_path / "v.safetensors", GOOD))
    assert theta.layer == 1 and theta.n_layers == 3


def test_a_vector_of_another_depth_and_a_fractional_layer_are_refused_before_work(tiny_llama):
    from tv_lens.task_vectors.learning import learn
    from tv_lens.task_vectors.vector import check_compatible

    two_layers = TaskVector(vectors=torch.zeros(2, tiny_llama.cfg.d_model), layer=0, model="other")
    with pytest.raises(ValueError, match="has 2 layers but the model has 3"):
        check_compatible(tiny_llama, two_layers)
    with pytest.raises(ValueError, match="layer must be an integer, got 1.5"):
        learn(tiny_llama, [("ab", "c")], ["de"], layer=1.5)
    with pytest.raises(ValueError, match="layer must be an integer, got True"):
        learn(tiny_llama, [("ab", "c")], ["de"], layer=True)


# 5. Late failures become early one-line errors.

def cli(capsys, *argv):
    from tv_lens.cli.main import main

    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("args, says", [
    (["--threads", "-1"], "argument --threads: must be at least 1, got -1"),
    (["--shard", "0/4"], "1 <= I <= N"),
    (["--shard", "two"], "--shard takes I/N"),
    (["--out", "FILE"], "is not a directory"),
    (["--tasks", "nope"], "unknown task"),
])
def test_reproduce_refuses_bad_arguments_before_the_model_loads(tmp_path, capsys, args, says):
    (tmp_path / "FILE").write_text("")
    args = [str(tmp_path / a) if a == "FILE" else a for a in args]
    out_args = [] if "--out" in args else ["--out", str(tmp_path / "run")]
    code, out, err = cli(capsys, "reproduce", "--quick", "--model", "tiny-llama", *out_args, *args)
    assert code == 2 and err.count("\n") == 1 and says in err and "loading" not in out, err


def test_an_unwritable_output_directory_is_refused(tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr("tv_lens.files.os.open", refuse)
    with pytest.raises(ValueError, match="cannot write into .* \\(Permission denied\\): choose a writable"):
        check_writable_folder(tmp_path)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_output_directory_is_refused(tmp_path):
    tmp_path.chmod(0o555)
    try:
        with pytest.raises(ValueError, match="cannot write into"):
            check_writable_folder(tmp_path / "run")
    finally:
        tmp_path.chmod(0o755)


def test_learn_refuses_a_directory_as_its_output_before_the_model_loads(tmp_path, capsys):
    code, _, err = cli(capsys, "learn", "--task", "next_letter", "--model", "no-such-model", "--out", str(tmp_path))
    assert code == 2 and "is a directory" in err and err.count("\n") == 1


def test_results_are_strict_json_and_checked_for_consistency(tiny_llama, tmp_path):
    outcome = run_main(tiny_llama, tmp_path)
    text = (tmp_path / "main_table/results.json").read_text()
    json.loads(text, parse_constant=lambda name: pytest.fail(f"{name} in a results file"))
    good = json.loads(text)
    ratio = outcome.results.summary.overall.tv_over_icl.value
    if ratio != ratio:  # ICL 0 on the tiny model: TV/ICL is undefined, written as null, read back as NaN
        assert good["summary"]["overall"]["tv_over_icl"]["value"] is None
        assert load_results(tmp_path / "main_table").summary.overall.tv_over_icl.value != ratio
    cases = [("correct", 99, "impossible"), ("best_layer", 3, "out of range"), ("best_layer", -1, "out of range")]
    for field, value, says in cases:
        bad = json.loads(text)
        target = bad["tasks"][0] if field == "best_layer" else bad["tasks"][0]["tv"]
        target[field] = value
        with pytest.raises(ResultsError, match=says):
            results_from_dict(bad)
    bad = json.loads(text)
    bad["tasks"][0]["dev_accuracy_by_layer"].pop()
    with pytest.raises(ResultsError, match="one entry per layer"):
        results_from_dict(bad)
    (tmp_path / "nan.json").write_text(text.replace('"seed": 0', '"seed": NaN'))
    with pytest.raises(ResultsError, match="NaN is not JSON"):
        load_results(tmp_path / "nan.json")


# 6. The quick protocol completes on the tiny model with the character tokenizer.

def test_reproduce_quick_on_tiny_llama_skips_a_task_without_single_token_outputs(tmp_path, capsys):
    code, out, err = cli(capsys, "reproduce", "--quick", "--model", "tiny-llama", "--out", str(tmp_path),
                         "--no-figures")
    assert code == 0, err
    skipped = [line for line in out.splitlines() if "skipped" in line and "antonyms" in line]
    assert len(skipped) == 1 and "single token" in skipped[0]
    assert [t.task for t in load_results(tmp_path / "main_table").tasks] == [
        t for t in reproduce.QUICK.tasks if t != "antonyms"]


# Property tests: random bytes and random JSON only ever give the documented one-line errors.

SCALARS = (st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
           | st.text(max_size=8))
JSON = st.recursive(SCALARS,
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
                    max_leaves=12)
PROPERTY = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@PROPERTY
@given(data=st.binary(max_size=300))
def test_random_bytes_as_a_vector_file_are_a_one_line_error(tmp_path, data):
    path = tmp_path / "v.safetensors"
    path.write_bytes(data)
    with pytest.raises(VectorFileError) as info:
        TaskVector.load(path)
    assert "\n" not in str(info.value)


@PROPERTY
@given(field=st.sampled_from(sorted(GOOD)), value=JSON)
def test_random_metadata_values_load_valid_or_give_a_one_line_error(tmp_path, field, value):
    path = write_vector(tmp_path / "v.safetensors", {**GOOD, field: value})
    try:
        theta = TaskVector.load(path)
    except VectorFileError as err:
        assert "\n" not in str(err)
        return
    assert theta.layer is None or 0 <= theta.layer < theta.n_layers
    assert isinstance(theta.hook, str) and isinstance(theta.n_shots, int) and theta.n_contexts >= 1


@PROPERTY
@given(record=st.binary(max_size=200) | JSON.map(lambda v: json.dumps(v).encode()),
       tensors=st.binary(max_size=200), result=JSON)
def test_random_unit_files_are_recomputed_never_fatal(tmp_path, record, tensors, result):
    folder = tmp_path / "p"
    shutil.rmtree(folder, ignore_errors=True)
    store = fake_store(folder, analysis="clusters")
    store.get("t", lambda: (TaskQueries(["q"]), {"thetas": torch.ones(1, 3, 4)}), needs=["thetas"])
    unit_json = folder / "clusters" / "units" / "t.json"
    valid = json.loads(unit_json.read_text())
    forged = {**valid, "result": result}
    forged["digest"] = record_digest(forged)
    for damage in (record, json.dumps(forged).encode(), None):
        if damage is None:
            next(unit_json.parent.glob("t~*.safetensors")).write_bytes(tensors)
        else:
            unit_json.write_bytes(damage)
        lines = []
        again = fake_store(folder, lines=lines, analysis="clusters")
        unit = again.get("t", lambda: (TaskQueries(["q"]), {"thetas": torch.ones(1, 3, 4)}), needs=["thetas"])
        assert unit.result == TaskQueries(["q"]) and torch.equal(unit.tensors["thetas"], torch.ones(1, 3, 4))
        assert all("\n" not in line for line in lines)
        if again.computed:
            assert len(lines) <= 1


# Shards: several processes over one run directory.

def test_shards_split_names_round_robin_and_parse_one_line_errors():
    names = ["e", "a", "d", "b", "c"]
    shares = [Shard(i, 2).share(names) for i in (1, 2)]
    assert shares == [["e", "a", "c"], ["d", "b"]]
    assert sorted(shares[0] + shares[1]) == sorted(names)
    assert Shard.parse("3/4") == Shard(3, 4)
    for bad in ("0/4", "5/4", "1/0", "x", "1/"):
        with pytest.raises(ValueError):
            Shard.parse(bad)


def test_four_shards_in_turn_give_the_results_of_one_run_and_compute_no_unit_twice(tiny_llama, tmp_path):
    """The fast twin of the next test, in this process: the shares of the units, one shard after another."""
    def units(outcomes) -> list[str]:  # a unit of another analysis's store is named analysis/unit already
        return sorted(unit if "/" in unit else f"{name}/{unit}" for name, o in outcomes.items() for unit in o.computed)

    one, shared = tmp_path / "one", tmp_path / "shared"
    alone = reproduce.reproduce(tiny_llama, one, protocol=reproduce.QUICK, progress=lambda m: None)
    computed = []
    for i in range(1, 5):
        share = reproduce.reproduce(tiny_llama, shared, protocol=reproduce.QUICK, progress=lambda m: None,
                                    shard=Shard(i, 4))
        assert all(outcome.results is None for outcome in share.values())
        computed += units(share)
    assert sorted(computed) == units(alone)
    assert not (shared / "main_table" / "results.json").exists()
    final = reproduce.reproduce(tiny_llama, shared, protocol=reproduce.QUICK, progress=lambda m: None)
    assert all(o.computed == [] for o in final.values())
    for name in alone:
        assert comparable(shared / name / "results.json") == comparable(one / name / "results.json"), name


@pytest.mark.slow
def test_four_shard_processes_give_the_results_of_one_process_and_compute_no_unit_twice(tiny_llama, tmp_path):
    one, shared = tmp_path / "one", tmp_path / "shared"
    alone = reproduce.reproduce(tiny_llama, one, protocol=reproduce.QUICK, progress=lambda m: None)
    n_units = sum(len(o.computed) for o in alone.values())
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    shards = [subprocess.Popen([sys.executable, "-m", "tv_lens.cli.main", "reproduce", "--quick",
                                "--model", "tiny-llama", "--out", str(shared), "--shard", f"{i}/4", "--threads", "1"],
                               cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
              for i in range(1, 5)]
    outputs = [p.communicate(timeout=600)[0] for p in shards]
    assert all(p.returncode == 0 for p in shards), outputs
    computed = [int(out.split("computed ")[-1].split(" unit")[0]) for out in outputs]
    assert sum(computed) == n_units, outputs
    assert not (shared / "main_table" / "results.json").exists()
    final = reproduce.reproduce(tiny_llama, shared, protocol=reproduce.QUICK, progress=lambda m: None)
    assert all(o.computed == [] for o in final.values())
    for name in alone:
        assert comparable(shared / name / "results.json") == comparable(one / name / "results.json"), name
