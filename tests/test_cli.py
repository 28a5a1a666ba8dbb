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


def test_a_model_the_hub_cannot_give_is_a_one_line_error_for_tasks_too(capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert main(["tasks", "--model", "someone/no-such-model"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("tv-lens: error: could not fetch 'someone/no-such-model'") and "\n" not in err


def test_reproduce_refuses_a_missing_task_file_before_loading_the_model(capsys, monkeypatch, tmp_path):
    import tv_lens.models

    def fail(*args, **kwargs):
        raise AssertionError("the model was loaded before the tasks were checked")

    monkeypatch.setattr(tv_lens.models, "load_model", fail)
    missing = tmp_path / "missing.json"
    assert main(["reproduce", "--tasks", "antonyms", str(missing), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert str(missing) in err and "\n" not in err and "valid tasks" not in err
    assert main(["reproduce", "--tasks", "antonymz", "--out", str(tmp_path)]) == 2
    assert "unknown task 'antonymz'" in capsys.readouterr().err


def test_tasks_counts_pairs_for_a_tiny_model_too(capsys):
    assert main(["tasks", "--model", "tiny-gemma"]) == 0
    next_letter = next(line.split() for line in capsys.readouterr().out.splitlines() if line.startswith("next_letter"))
    assert int(next_letter[-1]) == 25
