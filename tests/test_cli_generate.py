"""`tv-lens generate` end to end on the tiny model: the library's text for each option, seeds, stops,
stdin and one-line errors."""

import io

import pytest

from tv_lens.cli.main import main
from tv_lens.task_vectors.generation import generate
from tv_lens.task_vectors.vector import TaskVector

QUERIES = ["a", "b", "cd"]


def cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    path = tmp_path_factory.mktemp("vectors") / "next_letter.safetensors"
    assert main(["learn", "--task", "next_letter", "--model", "tiny-llama", "--k", "2", "--n-dev", "3",
                 "--out", str(path)]) == 0
    return path


@pytest.fixture(scope="module")
def model():
    from tv_lens.models.loading import load_model

    return load_model("tiny-llama")


def lines(texts):
    return [f"{q} -> {t}".replace("\n", "\n    ") for q, t in zip(QUERIES, texts)]


@pytest.mark.parametrize("options, settings", [
    ([], {}),
    (["--max-new-tokens", "6", "--temperature", "1.4", "--top-p", "0.9", "--top-k", "30", "--seed", "3"],
     dict(max_new_tokens=6, temperature=1.4, top_p=0.9, top_k=30, seed=3)),
    (["--mode", "add", "--strength", "2", "--positions", "generated", "--layer", "1", "--max-new-tokens", "5"],
     dict(mode="add", strength=2.0, positions="generated", layer=1, max_new_tokens=5)),
    (["--no-stop", "--max-new-tokens", "7", "--temperature", "1", "--seed", "0"],
     dict(stop=None, max_new_tokens=7, temperature=1.0, seed=0)),
    (["--stop", "\\n", "--stop", "e", "--max-new-tokens", "7"], dict(stop=["\n", "e"], max_new_tokens=7)),
])
def test_generate_prints_the_librarys_text_for_each_query(saved, model, capsys, options, settings):
    code, out, err = cli(capsys, "generate", str(saved), *QUERIES, *options)
    expected = generate(model, TaskVector.load(saved), QUERIES, **settings)
    assert code == 0, err
    assert out.splitlines()[-len("\n".join(lines(expected)).splitlines()):] == "\n".join(lines(expected)).splitlines()


def test_the_same_seed_prints_the_same_text(saved, capsys):
    argv = ["generate", str(saved), *QUERIES, "--temperature", "1.5", "--max-new-tokens", "8", "--seed", "5"]
    first, again = cli(capsys, *argv), cli(capsys, *argv)
    assert first[0] == 0 and first[1] == again[1]
    assert cli(capsys, *argv[:-1], "6")[1] != first[1]


def test_generate_reads_queries_from_stdin(saved, model, capsys, monkeypatch):
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO("a\n\nb\ncd\n".encode())))
    code, out, _ = cli(capsys, "generate", str(saved), "-")
    assert code == 0 and out.splitlines()[-3:] == lines(generate(model, TaskVector.load(saved), QUERIES))


@pytest.mark.parametrize("options, message", [
    (["--no-stop", "--stop", "x"], "--no-stop and --stop exclude each other"),
    (["--temperature", "-1"], "temperature must be a number >= 0"),
    (["--top-p", "0"], "top_p must be in"),
    (["--max-new-tokens", "0"], "max_new_tokens must be at least 1"),
    (["--chat"], "no chat template"),
    (["--model", "tiny-gemma"], "--force"),
])
def test_bad_options_are_one_line_errors(saved, capsys, options, message):
    code, _, err = cli(capsys, "generate", str(saved), "a", *options)
    assert code == 2 and err.count("\n") == 1 and message in err
