"""Each analysis's tables: the text (terminal) and the HTML (report) show the same rows, read from
a results file (the recorded small reproduction of tests/golden)."""

import json
import re
from html import unescape

import pytest
from test_results_format import GOLDEN, filled

from tv_lens.report.tables import TABLES, Table, as_html, as_text, visible
from tv_lens.runs.records import Results, results_from_dict


def results(analysis: str) -> Results:
    """The recorded results of `analysis`, as `load_results` gives them (undefined numbers as NaN)."""
    return results_from_dict(filled(json.loads((GOLDEN / analysis / "results.json").read_text())))


@pytest.mark.parametrize("analysis", [a for a in sorted(TABLES) if (GOLDEN / a).is_dir()])  # FV: its own test
def test_text_and_html_show_the_same_rows(analysis):
    data = results(analysis)
    tables = TABLES[analysis](data)
    text, html = as_text(data), as_html(data)
    html_rows = [[unescape(c) for c in re.findall(r"<t[hd]>(.*?)</t[hd]>", row)]
                 for row in re.findall(r"<tr>(.*?)</tr>", html)]
    assert html_rows == [list(line) for t in tables for line in (t.header, *t.rows)]
    text_lines = [line for line in text.splitlines() if line]
    assert len(text_lines) == len(html_rows)
    for line, cells in zip(text_lines, html_rows):
        assert line.split() == " ".join(cells).split()


def test_rows_follow_the_results():
    main = results("main_table")
    per_task, means = TABLES["main_table"](main)
    assert [row[0] for row in per_task.rows] == [t.task for t in main.tasks]
    assert [row[-1] for row in per_task.rows] == [str(t.best_layer) for t in main.tasks]
    assert [row[0] for row in means.rows] == [*main.summary.categories, "all tasks"]
    sweep = TABLES["layer_sweep"](results("layer_sweep"))[0]
    assert len(sweep.rows) == main.model.n_layers


def test_text_aligns_columns_and_html_escapes():
    table = Table(["task", "n"], [["a<b>", "1"], ["long name", "22"]])
    assert table.text().splitlines() == ["task       n", "a<b>       1", "long name 22"]
    assert "<td>a&lt;b&gt;</td>" in table.html() and "<b>" not in table.html()
    assert visible(" a\n") == "␣a⏎"
