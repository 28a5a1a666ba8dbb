"""The one text rule (issue 22 item 5, issue 24 item 1): line breaks per prompt format on every path
(queries from argv, stdin and the API, demonstrations, dummy queries, task pairs), a BOM on stdin,
control characters in printed names, and pairs too long for the model's context."""

import io
import json
import warnings

import pytest

from tv_lens.cli.main import main
from tv_lens.function_vectors.mediation import head_effects
from tv_lens.patching.engine import Budget, Run, predict
from tv_lens.task_vectors.applying import apply
from tv_lens.task_vectors.evaluation import evaluate
from tv_lens.task_vectors.generation import generate
from tv_lens.task_vectors.learning import learn
from tv_lens.task_vectors.serving import TaskVectorSolver
from tv_lens.tasks import Task, TaskFileError, get_task, load_task
from tv_lens.tasks.prompts import QA_FORMAT, PairsSkippedWarning, PromptFormat, PromptTextError, fitting_pairs
from tv_lens.tasks.texts import LINE_BREAKS, escape_controls, stdin_lines

ARROW = PromptFormat()
QA_TINY = QA_FORMAT.with_leading_space(False)  # the tiny tokenizers have no one-token answer after a space
DEMOS, DUMMIES = [("ab", "c"), ("de", "f")], ["gh", "ij"]


def test_the_line_breaks_are_exactly_those_str_splitlines_knows():
    splitting = {chr(c) for c in range(0x110000) if not 0xD800 <= c < 0xE000 and len(f"a{chr(c)}b".splitlines()) == 2}
    assert splitting == set(LINE_BREAKS)


@pytest.mark.parametrize("char", LINE_BREAKS)
def test_the_arrow_format_refuses_every_line_break_in_one_line_naming_the_text(char):
    problem = ARROW.text_problem(f"a{char}b")
    assert problem and "\n" not in problem
    with pytest.raises(PromptTextError, match=r"^query 3 'a\\") as caught:
        ARROW.check_text(f"a{char}b", "query 3")
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("char", LINE_BREAKS)
def test_the_qa_format_takes_a_single_newline_and_refuses_the_other_line_breaks(char):
    problem = QA_FORMAT.text_problem(f"a{char}b")
    assert (problem is None) == (char == "\n"), problem


@pytest.mark.parametrize(("text", "why"), [
    ("a\n\nb", "blank line"), ("a\n \t\nb", "blank line"), ("a\nA: b", "starting with 'A:'"),
    ("a\n  Q:b", "starting with 'Q:'"),
])
def test_the_qa_format_refuses_what_it_would_read_as_its_own_separator_or_lines(text, why):
    assert why in QA_FORMAT.text_problem(text)


def test_a_line_that_only_contains_a_marker_later_is_fine_in_the_qa_format():
    assert QA_FORMAT.text_problem("first line\nsays Q: and A: inside") is None
    assert QA_FORMAT.text_problem("A: at the very start stays on the Q: line") is None


def test_a_format_separated_by_a_string_refuses_the_string_and_takes_line_breaks():
    piped = PromptFormat(separator=" | ")
    assert piped.takes_line_breaks and piped.text_problem("a\nb") is None
    assert "separator" in piped.text_problem("a | b")


def test_every_api_path_applies_the_rule_of_its_format(tiny_llama):
    arrow = learn(tiny_llama, DEMOS, DUMMIES, layer=1)
    qa = learn(tiny_llama, DEMOS, DUMMIES, layer=1, fmt=QA_FORMAT)
    for call in (lambda: apply(tiny_llama, arrow, ["ok", "x\ny"]),
                 lambda: generate(tiny_llama, arrow, ["x\ny"], max_new_tokens=2),
                 lambda: TaskVectorSolver(tiny_llama, arrow)(["x\ny"]),
                 lambda: learn(tiny_llama, [("x\ny", "c")], ["gh"]),
                 lambda: learn(tiny_llama, [("ab", "x\ny")], ["gh"]),
                 lambda: learn(tiny_llama, DEMOS, ["x\ny"]),
                 lambda: apply(tiny_llama, qa, ["x\fy"]),
                 lambda: apply(tiny_llama, qa, ["x\n\ny"]),
                 lambda: learn(tiny_llama, [("x\u2028y", "c")], ["gh"], fmt=QA_FORMAT)):
        with pytest.raises(PromptTextError) as caught:
            call()
        assert "\n" not in str(caught.value) and "'x\\" in str(caught.value)
    answers = apply(tiny_llama, qa, ["x\ny"])  # answered in the Q:/A: format, not refused
    assert len(answers) == 1 and isinstance(answers[0], str)
    theta = learn(tiny_llama, [("x\ny", "c"), ("de", "f")], ["g\nh"], fmt=QA_FORMAT)
    assert theta.vectors.isfinite().all()


def test_task_pairs_with_a_newline_load_and_are_refused_only_by_the_arrow_format(tiny_llama, tmp_path):
    path = tmp_path / "breaks.json"
    path.write_text(json.dumps({**get_task("next_letter").pairs, "x\ny": "z"}))
    task = load_task(path)
    assert "x\ny" in task.pairs
    with pytest.raises(PromptTextError, match=r"^task 'breaks': input 'x\\ny' contains a line break"):
        evaluate(tiny_llama, task, n_baseline=2, n_dev=2, n_test=2)
    effects = head_effects(tiny_llama, task, fmt=QA_TINY, n_shots=2, n_clean=2, n_corrupted=1, queries="all")
    assert effects.effects.shape[0] == 1


@pytest.mark.parametrize("text", ['{"a\\u2028b": "c"}', '{"a": "b\\rc"}', '{"a": "b\\u0085c"}'])
def test_task_files_refuse_the_other_line_breaks_naming_the_place(tmp_path, text):
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(TaskFileError, match="key 'a.*a line break that str.splitlines splits at") as caught:
        load_task(path)
    assert "\n" not in str(caught.value)


def test_stdin_lines_drop_a_bom_split_at_newlines_only_and_keep_other_breaks_for_the_rule():
    assert stdin_lines(b"\xef\xbb\xbfab\r\n\n cd \nx\x0cy\n") == ["ab", "cd", "x\x0cy"]
    assert stdin_lines("a\u2028b\n".encode()) == ["a\u2028b"]
    with pytest.raises(ValueError, match="stdin is not UTF-8 text"):
        stdin_lines(b"a\xff")


@pytest.fixture(scope="module")
def vector_file(tmp_path_factory, tiny_llama):
    return learn(tiny_llama, DEMOS, DUMMIES, layer=1).save(tmp_path_factory.mktemp("texts") / "arrow.safetensors")


def run_cli(capsys, monkeypatch, argv, stdin=b""):
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(stdin)))
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_apply_on_stdin_with_a_bom_answers_as_the_arguments(vector_file, capsys, monkeypatch):
    argv = ["apply", str(vector_file), "--model", "tiny-llama"]
    _, by_argument, _ = run_cli(capsys, monkeypatch, [*argv, "ab", "cd"])
    code, from_stdin, _ = run_cli(capsys, monkeypatch, [*argv, "-"], b"\xef\xbb\xbfab\r\ncd\r\n")
    assert code == 0 and from_stdin.splitlines()[-2:] == by_argument.splitlines()[-2:]
    assert from_stdin.splitlines()[-2].startswith("ab ->")


@pytest.mark.parametrize("stdin", [b"ab\x0ccd\nef\n", "ab\u2028cd\nef\n".encode()])
def test_a_line_break_inside_a_stdin_line_is_one_error_before_the_model_loads(vector_file, capsys, monkeypatch,
                                                                               stdin):
    monkeypatch.setattr("tv_lens.models.loading.load_model", lambda *a, **k: pytest.fail("the model loaded"))
    code, out, err = run_cli(capsys, monkeypatch, ["apply", str(vector_file), "-"], stdin)
    assert code == 2 and out == "" and err.count("\n") == 1 and "query 0 'ab\\" in err


def test_a_query_with_a_newline_on_the_command_line_is_refused_for_an_arrow_vector(vector_file, capsys,
                                                                                   monkeypatch):
    monkeypatch.setattr("tv_lens.models.loading.load_model", lambda *a, **k: pytest.fail("the model loaded"))
    code, _, err = run_cli(capsys, monkeypatch, ["apply", str(vector_file), "a\nb"])
    assert code == 2 and err.count("\n") == 1 and "'a\\nb' contains a line break" in err


def test_a_qa_vector_answers_a_query_with_a_newline_on_one_output_line(tiny_llama, tmp_path, capsys, monkeypatch):
    path = learn(tiny_llama, DEMOS, DUMMIES, layer=1, fmt=QA_FORMAT).save(tmp_path / "qa.safetensors")
    code, out, _ = run_cli(capsys, monkeypatch, ["apply", str(path), "a\nb", "--model", "tiny-llama"])
    assert code == 0 and out.splitlines()[-1].startswith("a\\nb -> ")


def test_names_with_control_characters_are_escaped_or_refused(tmp_path, capsys, monkeypatch):
    assert escape_controls("\x1b[31mred\x07\u2028é") == "\\x1b[31mred\\x07\\u2028é"
    with pytest.raises(ValueError, match="control characters"):
        Task("\x1b[2Jwiped", "custom", "", {"a": "b"})
    path = tmp_path / "\x1b[31mred.json"
    path.write_text('{"a": "b", "c": "d"}')
    assert load_task(path).name == "\\x1b[31mred"
    code, out, err = run_cli(capsys, monkeypatch, ["tasks", str(path)])
    assert code == 0 and "\x1b" not in out + err and "\\x1b[31mred" in out
    code, _, err = run_cli(capsys, monkeypatch, ["evaluate", "--task", str(tmp_path / "\x1b[1mnone.json")])
    assert code == 2 and "\x1b" not in err and "\\x1b[1mnone.json" in err


def long_task() -> Task:
    """27 pairs of single-token answers for the tiny tokenizers, one input of 10,000 characters."""
    return Task("long", "custom", "", {**get_task("next_letter").pairs, "aa": "b", "x" * 10_000: "z"})


def test_a_pair_too_long_for_the_context_is_skipped_with_one_warning(tiny_llama):
    """Why: one 10,000-character pair among 27 aborted the whole task with 'a batch of 10076 tokens'."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = evaluate(tiny_llama, long_task(), n_baseline=2, n_dev=8, n_test=8)
    skipped = [str(w.message) for w in caught if issubclass(w.category, PairsSkippedWarning)]
    assert len(skipped) == 1 and "\n" not in skipped[0]
    assert skipped[0].startswith("task 'long': 1 of 27 pairs skipped as too long") and "'xxxx" in skipped[0]
    assert result.n_pairs == 27 and result.n_pairs_filtered == 26
    with pytest.warns(PairsSkippedWarning):
        head_effects(tiny_llama, long_task(), fmt=QA_TINY, n_shots=2, n_clean=8, n_corrupted=4, queries="all")


def test_pairs_are_judged_against_their_share_of_the_limit(tiny_llama):
    task = Task("t", "custom", "", {"a": "b", "bb bb bb bb": "c", "c": "d"})
    lengths = {x: len(tiny_llama.tokenizer(ARROW.demo(x, y[0]) + "\n", add_special_tokens=False)["input_ids"])
               for x, y in task.pairs.items()}
    limit = 1 + 3 * lengths["bb bb bb bb"]  # two demonstrations and a query of the long pair fit exactly
    assert fitting_pairs(task, ARROW, tiny_llama.tokenizer, limit, n_shots=2) is task
    with pytest.warns(PairsSkippedWarning, match="1 of 3 pairs skipped"):
        kept = fitting_pairs(task, ARROW, tiny_llama.tokenizer, limit - 1, n_shots=2)
    assert set(kept.pairs) == {"a", "c"}
    with pytest.raises(ValueError, match="none of its 3 pairs fits"):
        fitting_pairs(task, ARROW, tiny_llama.tokenizer, 3, n_shots=2)


def test_prompts_that_fit_alone_are_never_batched_wider_than_the_limit(tiny_llama, monkeypatch):
    """A long shared prefix in one group and a long suffix in another fit alone, but not padded together."""
    prefix = list(range(10, 20))
    groups = [[Run([1, *prefix, 30]), Run([1, *prefix, 31])], [Run([1, 5, 6]), Run([1, 5, *prefix])]]
    alone = [predict(tiny_llama, [group], budget=Budget())[0] for group in groups]
    monkeypatch.setattr("tv_lens.patching.engine.token_limit", lambda model: 12)  # each run has at most 12 tokens
    together = predict(tiny_llama, groups, budget=Budget())
    assert [[p.token for p in group] for group in together] == [[p.token for p in group] for group in alone]


def test_commands_refuse_a_task_file_the_format_cannot_hold_before_the_model_loads(tmp_path, capsys, monkeypatch):
    path = tmp_path / "breaks.json"
    path.write_text(json.dumps({**get_task("next_letter").pairs, "x\ny": "z", "p\n\nq": "r"}))
    monkeypatch.setattr("tv_lens.models.loading.load_model", lambda *a, **k: pytest.fail("the model loaded"))
    for argv in (["evaluate", "--task", str(path)], ["learn", "--task", str(path), "--out", str(tmp_path / "v")],
                 ["fv", "--task", str(path), "--format", "arrow"]):
        code, _, err = run_cli(capsys, monkeypatch, [*argv, "--model", "tiny-llama"])
        assert code == 2 and err.count("\n") == 1 and "contains a line break" in err and "(2 of 27 pairs" in err
    code, _, err = run_cli(capsys, monkeypatch, ["fv", "--task", str(path), "--format", "qa", "--model", "tiny-llama"])
    assert code == 2 and err.count("\n") == 1 and "input 'p\\n\\nq' contains a blank line" in err


def test_reproduce_skips_a_task_the_arrow_format_cannot_hold_with_one_line(tiny_llama):
    from analyses.common import usable_tasks

    breaks = Task("breaks", "custom", "", {**get_task("next_letter").pairs, "x\ny": "z"})
    lines = []
    kept = usable_tasks(tiny_llama, [get_task("next_letter"), breaks], lines.append)
    assert [t.name for t in kept] == ["next_letter"]
    assert len(lines) == 1 and lines[0].startswith("[reproduce] breaks skipped: task 'breaks': input 'x\\ny'")
