"""`tv-lens learn` / `tv-lens apply` end to end on the tiny models."""

import json

import pytest
import torch

from tv_lens.cli.main import main
from tv_lens.cli.vectors import dev_curve
from tv_lens.task_vectors.vector import TaskVector


def cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    path = tmp_path_factory.mktemp("vectors") / "next_letter.safetensors"
    assert main(["learn", "--task", "next_letter", "--model", "tiny-llama", "--k", "3", "--n-dev", "4",
                 "--out", str(path)]) == 0
    return path


def test_learn_writes_a_task_level_vector_with_its_layer(saved):
    theta = TaskVector.load(saved)
    assert theta.task == "next_letter" and theta.model == "tiny-llama" and theta.n_contexts == 3
    assert theta.layer is not None and len(theta.dev_accuracy) == theta.n_layers


def test_learn_with_a_layer_and_a_custom_task_file(tmp_path, capsys):
    task_file = tmp_path / "shift.json"
    task_file.write_text(json.dumps({f"{a}{a}": chr(ord(a) + 1) for a in "abcdefghijklmnop"}))
    out_path = tmp_path / "shift.safetensors"
    code, out, _ = cli(capsys, "learn", "--task", str(task_file), "--model", "tiny-llama", "--k", "2",
                       "--layer", "2", "--out", str(out_path))
    assert code == 0 and "layer 2" in out
    assert TaskVector.load(out_path).dev_accuracy == []


def test_apply_prints_the_solvers_answer_to_each_query(saved, capsys):
    from tv_lens.models.loading import load_model
    from tv_lens.task_vectors.serving import TaskVectorSolver

    theta = TaskVector.load(saved)
    model = load_model("tiny-llama")
    queries = ["a", "b", "c", "d"]
    for options, settings, n in (([], {}, 1),
                                 (["--max-new-tokens", "4", "--mode", "add", "--alpha", "0.5", "--positions", "all",
                                   "--layer", "1"], dict(mode="add", strength=0.5, positions="all", layer=1), 4)):
        code, out, _ = cli(capsys, "apply", str(saved), *queries, *options)
        expected = TaskVectorSolver(model, theta, **settings).generate(queries, max_new_tokens=n)
        assert code == 0 and out.splitlines()[-4:] == [f"{q} -> {a}" for q, a in zip(queries, expected)]


def test_another_model_is_refused_unless_forced(saved, capsys):
    code, _, err = cli(capsys, "apply", str(saved), "a", "--model", "tiny-gemma")
    assert code == 2 and err.count("\n") == 1 and "--force" in err
    code, out, _ = cli(capsys, "apply", str(saved), "a", "--model", "tiny-gemma", "--force")
    assert code == 0 and "a ->" in out


def test_bad_files_and_widths_are_one_line_errors(saved, tmp_path, capsys):
    (tmp_path / "junk.safetensors").write_bytes(b"\x00" * 40)
    narrow = TaskVector(vectors=torch.zeros(3, 32), layer=0, model="tiny-llama")
    narrow.save(tmp_path / "narrow.safetensors")
    cases = {"missing.safetensors": "no task vector file", "junk.safetensors": "not a readable",
             "narrow.safetensors": "d_model 32"}
    for name, message in cases.items():
        code, _, err = cli(capsys, "apply", str(tmp_path / name), "a", "--force")
        assert code == 2 and err.count("\n") == 1 and message in err, err
    code, _, err = cli(capsys, "learn", "--task", "nope", "--model", "tiny-llama", "--out", str(tmp_path / "x"))
    assert code == 2 and "unknown task" in err


def test_apply_reads_queries_from_stdin(saved, capsys, monkeypatch):
    import io

    _, by_argument, _ = cli(capsys, "apply", str(saved), "a", "b")
    def stdin(data: bytes):
        monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(data)))

    stdin(b"a\n\n b \r\n")
    code, from_stdin, _ = cli(capsys, "apply", str(saved), "-")
    assert code == 0 and from_stdin.splitlines()[-2:] == by_argument.splitlines()[-2:]
    stdin(b"\n")
    code, _, err = cli(capsys, "apply", str(saved), "-")
    assert code == 2 and "no queries on stdin" in err
    stdin(b"a\n\xff\xfe\n")
    code, out, err = cli(capsys, "apply", str(saved), "-")
    assert code == 2 and err.count("\n") == 1 and "stdin is not UTF-8" in err


def test_a_query_too_long_for_the_model_is_reported_alone_and_the_others_answered(saved, capsys, monkeypatch):
    import io

    _, by_argument, _ = cli(capsys, "apply", str(saved), "a", "b")
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(b"a\n" + b"x" * 600 + b"\nb\n")))
    code, out, err = cli(capsys, "apply", str(saved), "-")
    assert code == 2 and out.splitlines()[-2:] == by_argument.splitlines()[-2:]
    lines = err.splitlines()
    assert len(lines) == 2 and "'xxxxxxxxxxxxxxxxxxxx'... (600 characters) has 611 tokens" in lines[0]
    assert "limit of 512" in lines[0]
    assert "1 of 3 queries were too long" in lines[1]


def test_a_vector_of_other_weights_is_refused_unless_forced(tmp_path, capsys):
    path = TaskVector(vectors=torch.zeros(3, 64), layer=1, model="tiny-llama", fingerprint="0000").save(
        tmp_path / "other.safetensors")
    code, _, err = cli(capsys, "apply", str(path), "a")
    assert code == 2 and err.count("\n") == 1 and "weights 0000" in err and "--force" in err
    code, out, _ = cli(capsys, "apply", str(path), "a", "--force")
    assert code == 0 and out.splitlines()[-1].startswith("a ->")


def test_the_dev_curve_names_its_layers_and_says_when_it_chose_none():
    """Why: `tv-lens fv` at small sizes printed eighteen 0.00s and saved layer 0 with no word on why."""
    assert dev_curve([0.1, 0.5, 0.2]) == "dev accuracy by layer, 0 to 2: 0.10 0.50 0.20"
    flat = dev_curve([0.0, 0.0], " (added zero-shot)")
    assert flat.startswith("dev accuracy by layer (added zero-shot), 0 to 1: 0.00 0.00 (the same at every layer")
