"""The command line: help, tasks listing, and one-line errors."""

import pytest

from tv_lens.cli import main


def test_help_works(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    assert "tv-lens" in capsys.readouterr().out


def test_tasks_lists_all_18_with_counts_after_the_filter(capsys):
    assert main(["tasks", "--model", "gemma-3-270m"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].split()[:2] == ["task", "category"]
    assert len(lines) == 19
    antonyms = next(line.split() for line in lines if line.startswith("antonyms"))
    assert int(antonyms[-1]) >= 60


def test_unknown_model_is_a_one_line_error(capsys):
    assert main(["tasks", "--model", "no such model"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("tv-lens: error:") and "\n" not in err
