"""User task files: every accepted layout, every bad input as a one-line TaskFileError, and round trips."""

import csv
import json
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tv_lens.tasks import TaskFileError, TaskFileWarning, load_task, read_pairs

EXPECTED = {"chien": ("dog",), "grand": ("big", "tall", "large")}


def write(tmp_path, name, text, encoding="utf-8"):
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    return path


def load_error(path, **kwargs):
    with pytest.raises(TaskFileError) as error:
        load_task(path, **kwargs)
    message = str(error.value)
    assert "\n" not in message
    assert str(path) in message
    assert isinstance(error.value, ValueError)
    return message


# --- accepted layouts ----------------------------------------------------------------------------

def test_json_mapping(tmp_path):
    path = write(tmp_path, "fr.json", json.dumps({"chien": "dog", "grand": ["big", "tall", "large"]}))
    task = load_task(path)
    assert dict(task.pairs) == EXPECTED
    assert (task.name, task.category, task.scoring) == ("fr", "custom", "exact")
    assert task.description == "loaded from fr.json"


def test_json_list_of_records(tmp_path):
    records = [{"input": "chien", "output": "dog"},
               {"input": "grand", "outputs": ["big", "tall", "large"], "note": "x"}]
    task = load_task(write(tmp_path, "fr.json", json.dumps(records)), scoring="any_of", name="french")
    assert dict(task.pairs) == EXPECTED
    assert (task.name, task.scoring) == ("french", "any_of")


def test_jsonl(tmp_path):
    lines = ['{"input": "chien", "output": "dog"}', "", '{"input": "grand", "outputs": ["big", "tall", "large"]}', ""]
    task = load_task(write(tmp_path, "fr.jsonl", "\n".join(lines)))
    assert dict(task.pairs) == EXPECTED


def test_csv_with_extra_columns_quotes_and_bom(tmp_path):
    text = "\ufeffid,input , output\n1,chien,dog\n2,\"a, b\",\" c \"\n"
    task = load_task(write(tmp_path, "pairs.csv", text), category="knowledge", scoring="prefix")
    assert dict(task.pairs) == {"chien": ("dog",), "a, b": ("c",)}
    assert task.category == "knowledge" and not task.single_token_filter


def test_values_are_stripped_and_identical_duplicates_are_merged(tmp_path):
    text = '{"input": " chien ", "output": "dog "}\n{"input": "chien", "output": "dog"}\n'
    merged = "1 pair repeats an earlier input; merged into it, adding 0 accepted alternative outputs"
    with pytest.warns(TaskFileWarning, match=merged):
        assert dict(load_task(write(tmp_path, "d.jsonl", text)).pairs) == {"chien": ("dog",)}
    text = "input,output\nchien,dog\nchien,dog\n"
    with pytest.warns(TaskFileWarning):
        assert dict(load_task(write(tmp_path, "d.csv", text)).pairs) == {"chien": ("dog",)}


def test_a_word_list_with_repeated_keys_loads_with_alternatives_and_one_warning(tmp_path):
    """Why (issue 10): `{"safe": "risky", ..., "safe": "dangerous"}` was refused outright."""
    text = '{"safe": "risky", "hot": "cold", "safe": "dangerous", "up": "down", "hot": "cold", "up": "low"}'
    path = write(tmp_path, "antonyms.json", text)
    with pytest.warns(TaskFileWarning) as caught:
        task = load_task(path)
    assert len(caught) == 1
    message = str(caught[0].message)
    assert "\n" not in message and str(path) in message
    assert "3 pairs repeat an earlier input" in message and "adding 2 accepted alternative" in message
    assert dict(task.pairs) == {"safe": ("risky", "dangerous"), "hot": ("cold",), "up": ("down", "low")}
    assert task.canonical("safe") == "risky" and task.score("dangerous", "safe")
    pairs, counts = read_pairs(path)
    assert pairs == dict(task.pairs)
    assert (counts.read, counts.merged, counts.alternatives_added) == (6, 3, 2)


@pytest.mark.parametrize("name", ["r.csv", "r.jsonl", "r.json"])
def test_repeated_inputs_merge_in_every_format(tmp_path, name):
    rows = [("grand", "big"), ("chien", "dog"), ("grand", "tall"), ("grand", "large")]
    if name.endswith(".csv"):
        text = "input,output\n" + "".join(f"{x},{y}\n" for x, y in rows)
    elif name.endswith(".jsonl"):
        text = "\n".join(json.dumps({"input": x, "output": y}) for x, y in rows)
    else:
        text = json.dumps([{"input": x, "output": y} for x, y in rows])
    with pytest.warns(TaskFileWarning, match="2 pairs repeat"):
        assert dict(load_task(write(tmp_path, name, text)).pairs) == EXPECTED


def test_json_list_of_input_output_records_takes_a_string_or_a_list(tmp_path):
    """Why (issue 10): the `[{"input": ..., "output": ...}]` form, output a string or a list."""
    records = [{"input": "chien", "output": "dog"}, {"input": "grand", "output": ["big", "tall", "large"]}]
    assert dict(load_task(write(tmp_path, "fr.json", json.dumps(records))).pairs) == EXPECTED


def test_single_token_filter_can_be_requested(tmp_path):
    path = write(tmp_path, "t.json", '{"a": "b"}')
    assert load_task(path, single_token_filter=True).single_token_filter


# --- bad input -----------------------------------------------------------------------------------

def test_missing_file(tmp_path):
    assert "no such file" in load_error(tmp_path / "absent.json")


def test_directory(tmp_path):
    (tmp_path / "dir.json").mkdir()
    assert "not a file" in load_error(tmp_path / "dir.json")


def test_unsupported_extension(tmp_path):
    message = load_error(write(tmp_path, "pairs.txt", "a->b"))
    assert "unsupported file type '.txt'" in message and ".json, .jsonl, .csv" in message


@pytest.mark.parametrize("name", ["e.json", "e.jsonl", "e.csv"])
def test_empty_file(tmp_path, name):
    assert "file is empty" in load_error(write(tmp_path, name, " \n\n"))


@pytest.mark.parametrize(("name", "text"), [("e.json", "{}"), ("e.json", "[]"), ("e.csv", "input,output\n")])
def test_file_without_pairs(tmp_path, name, text):
    assert "contains no pairs" in load_error(write(tmp_path, name, text))


def test_not_utf8(tmp_path):
    assert "not UTF-8" in load_error(write(tmp_path, "l.json", '{"café": "coffee"}', encoding="latin-1"))


def test_malformed_json_names_line_and_column(tmp_path):
    message = load_error(write(tmp_path, "bad.json", '{\n  "a": "b",\n  "c" "d"\n}'))
    assert "line 3 column 7: invalid JSON" in message


def test_malformed_jsonl_names_the_line(tmp_path):
    message = load_error(write(tmp_path, "bad.jsonl", '{"input": "a", "output": "b"}\n{"input": "c", \n'))
    assert "line 2: invalid JSON" in message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('"just a string"', "expected a JSON object {input: output} or a list of objects, got str"),
        ('[["a", "b"]]', "item 1: expected an object"),
        ('[{"output": "b"}]', 'item 1: needs "input"'),
        ('[{"input": "a", "output": "b", "outputs": ["c"]}]', 'item 1: needs "input" and exactly one of'),
        ('[{"input": "a", "output": 3}]', "item 1: output must be a string, got number 3"),
        ('[{"input": null, "output": "b"}]', "item 1: input must be a string, got null None"),
        ('[{"input": "a", "outputs": "b"}]', 'item 1: "outputs" must be a list of strings'),
        ('[{"input": "a", "outputs": []}]', "item 1: the list of outputs is empty"),
        ('[{"input": "a", "output": "  "}]', "item 1: output is empty"),
        ('{"a": 1}', "key 'a': output must be a string, got number 1"),
        ('{"a": {"b": "c"}}', "key 'a': output must be a string, got object {'b': 'c'}"),
        ('[{"input": "a", "outputs": {"b": "c"}}]', 'item 1: "outputs" must be a list of strings'),
        ('{"a": ["b", 2]}', "key 'a': outputs must be strings"),
        ('{"": "b"}', "key '': input is empty"),
        ('{"a": "b\\u2028c"}', "key 'a': output 'b\\u2028c' contains U+2028 (LINE SEPARATOR), a line break"),
    ],
)
def test_bad_json_values(tmp_path, text, expected):
    assert expected in load_error(write(tmp_path, "bad.json", text))


def test_bad_jsonl_row_names_its_line(tmp_path):
    text = '{"input": "a", "output": "b"}\n\n{"input": "c", "output": 4}\n'
    assert "line 3: output must be a string" in load_error(write(tmp_path, "bad.jsonl", text))


def test_hostile_files_are_one_line_errors(tmp_path):
    """Issue 13, item 5: deep nesting, a 5001-digit integer, a repeated CSV column, a lone surrogate."""
    assert "nested too deeply" in load_error(write(tmp_path, "deep.json", "[" * 100_000 + "]" * 100_000))
    assert "line 1: invalid JSON (nested too deeply)" in load_error(write(tmp_path, "deep.jsonl", "[" * 100_000))
    assert "invalid JSON (Exceeds the limit" in load_error(write(tmp_path, "big.json", '{"a": ' + "9" * 5001 + "}"))
    message = load_error(write(tmp_path, "twice.csv", "input,output,output\na,b,c\n"))
    assert "names the column output twice" in message
    assert "not valid Unicode" in load_error(write(tmp_path, "s.json", '{"a": "\\ud800"}'))


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=64), st.sampled_from(["r.json", "r.jsonl", "r.csv"]))
def test_random_bytes_load_or_give_a_one_line_task_file_error(data, name):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / name
        path.write_bytes(data)
        try:
            load_task(path)
        except TaskFileError as error:
            assert "\n" not in str(error) and str(path) in str(error)


def test_csv_without_the_named_columns(tmp_path):
    message = load_error(write(tmp_path, "h.csv", "a,b\nc,d\n"))
    assert "the first row must name the columns input and output, got ['a', 'b']" in message


def test_csv_short_row_and_empty_cell(tmp_path):
    assert "row 3: missing input or output cell" in load_error(write(tmp_path, "s.csv", "input,output\na,b\nc\n"))
    assert "row 2: output is empty" in load_error(write(tmp_path, "e.csv", "input,output\na,\n"))


def test_csv_parse_error(tmp_path):
    assert "row 2: invalid CSV" in load_error(write(tmp_path, "q.csv", 'input,output\n"a"b,c\n'))
    assert "row 2: invalid CSV (unexpected end of data)" in load_error(write(tmp_path, "u.csv", 'input,output\n"a,b\n'))


def test_unknown_scorer_or_bad_name(tmp_path):
    path = write(tmp_path, "t.json", '{"a": "b"}')
    assert "unknown scorer 'fuzzy'" in load_error(path, scoring="fuzzy")
    assert "task name" in load_error(path, name=" spaced ")


# --- round trips ---------------------------------------------------------------------------------

texts = (
    st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=12)
    .map(str.strip)
    .filter(bool)
)
multi_pairs = st.dictionaries(texts, st.lists(texts, min_size=1, max_size=3, unique=True), min_size=1, max_size=8)
single_pairs = st.dictionaries(texts, texts, min_size=1, max_size=8)


def round_trip(name, text):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / name
        path.write_text(text, encoding="utf-8")
        return {x: list(ys) for x, ys in load_task(path).pairs.items()}


@settings(max_examples=40, deadline=None)
@given(multi_pairs)
def test_round_trip_json_mapping(pairs):
    assert round_trip("t.json", json.dumps(pairs, ensure_ascii=False)) == pairs


@settings(max_examples=40, deadline=None)
@given(multi_pairs)
def test_round_trip_json_records(pairs):
    records = [{"input": x, "outputs": ys} for x, ys in pairs.items()]
    assert round_trip("t.json", json.dumps(records)) == pairs


@settings(max_examples=40, deadline=None)
@given(multi_pairs)
def test_round_trip_jsonl(pairs):
    lines = [json.dumps({"input": x, "outputs": ys}, ensure_ascii=False) for x, ys in pairs.items()]
    assert round_trip("t.jsonl", "\n".join(lines)) == pairs


@settings(max_examples=40, deadline=None)
@given(single_pairs)
def test_round_trip_csv(pairs):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "t.csv"
        with path.open("w", encoding="utf-8", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["input", "output"])
            writer.writerows(pairs.items())
        assert {x: ys[0] for x, ys in load_task(path).pairs.items()} == pairs
