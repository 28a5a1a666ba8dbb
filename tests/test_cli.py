"""The command line: help, tasks listing, and one-line errors."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tv_lens.cli.main import main

ROOT = Path(__file__).parents[1]
HEAVY = ("torch", "transformer_lens", "transformers", "plotly", "numpy")


def test_help_works(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    assert "tv-lens" in capsys.readouterr().out


def loaded_after(code: str) -> list[str]:
    """The heavy packages a fresh interpreter has loaded after running `code`."""
    check = f"{code}\nimport sys\nprint('loaded:', *(m for m in {HEAVY!r} if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", check], cwd=ROOT, capture_output=True, text=True, check=True)
    return done.stdout.splitlines()[-1].split()[1:]


def test_import_and_every_help_load_no_heavy_package():
    assert loaded_after("import tv_lens") == []
    assert loaded_after("import tv_lens as tv; tv.Task; tv.get_task('antonyms')") == []
    commands = "models tasks learn apply reproduce figures".split()
    run_every_help = ("from tv_lens.cli.main import main\n"
                      f"for command in {commands!r}:\n"
                      "    try: main([command, '--help'])\n"
                      "    except SystemExit as end: assert end.code == 0")
    assert loaded_after(run_every_help) == []


def test_listing_the_tasks_without_a_model_loads_no_heavy_package():
    """Why: `tv-lens tasks` imported the model code (torch, TransformerLens) and took 7 s to print a list."""
    listing = ("import contextlib, io\nfrom tv_lens.cli.main import main\n"
               "with contextlib.redirect_stdout(io.StringIO()): assert main(['tasks']) == 0")
    assert loaded_after(listing) == []


def test_every_command_has_the_run_options_and_a_description():
    from analyses.commands import add_commands
    from tv_lens.cli.main import build_parser

    parser = build_parser([add_commands])
    commands = next(a for a in parser._actions if a.dest == "command").choices
    assert {"models", "tasks", "learn", "apply", "reproduce", "figures"} <= set(commands)
    for name, command in commands.items():
        assert command.description, name
        options = {o for a in command._actions for o in a.option_strings}
        assert "--threads" in options, name
        undocumented = [a.dest for a in command._actions if a.help is None]
        assert undocumented == [], (name, undocumented)


def test_the_library_never_imports_its_experiments():
    import_all = ("import importlib, pkgutil, sys, tv_lens\n"
                  "for m in pkgutil.walk_packages(tv_lens.__path__, 'tv_lens.'): importlib.import_module(m.name)\n"
                  "print(' '.join(m for m in sys.modules if m.split('.')[0] in ('analyses', 'figures')))")
    done = subprocess.run([sys.executable, "-c", import_all], cwd=ROOT, capture_output=True, text=True, check=True)
    assert done.stdout.split() == []


def test_tasks_lists_all_18_and_the_compound_tasks_with_counts_after_the_filter(capsys):
    assert main(["tasks", "--model", "gemma-3-270m"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].split()[:2] == ["task", "category"]
    assert len(lines) == 1 + 18 + 4 and lines[-1].startswith("list_last_next")
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
    import tv_lens.models.loading

    def fail(*args, **kwargs):
        raise AssertionError("the model was loaded before the tasks were checked")

    monkeypatch.setattr(tv_lens.models.loading, "load_model", fail)
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


@pytest.mark.parametrize("quiet", [False, True])
def test_progress_bars_on_a_terminal_unless_quiet(quiet, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    args = ["reproduce", "--model", "tiny-llama", "--quick", "--tasks", "next_letter", "--out", str(tmp_path),
            "--no-figures", "--threads", "1"] + (["--quiet"] if quiet else [])
    assert main(args) == 0
    captured = capsys.readouterr()
    assert "Moving model" not in captured.out and "[main_table] 1/1 next_letter" in captured.out
    for bar in (r"main table: +\d+%\|", r"reproduce: +\d+%\|", r"\[\d\d:\d\d<\d\d:\d\d"):  # the last: elapsed<ETA
        assert bool(re.search(bar, captured.err)) != quiet, (bar, captured.err[-500:])


STAGES = {  # each command's stages, each drawn as one bar of the engine's forward passes
    "evaluate": ["baseline", "ICL and θ of the test items", "θ of the dev items", "layer sweep",
                 "task vector on the test items"],
    "learn": ["θ of 3 contexts", "layer sweep on dev items"],
    "fv": ["validation queries", "ā over clean prompts", "AIE of every head", "FV layer sweep on dev items"],
}
SIZES = {"evaluate": [], "learn": ["--k", "3", "--n-dev", "4"],
         "fv": ["--k", "3", "--n-clean", "4", "--n-corrupted", "2", "--n-dev", "3", "--format", "arrow", "--heads",
                "task", "--queries", "all"]}


@pytest.mark.parametrize("quiet", [False, True])
@pytest.mark.parametrize("command", sorted(STAGES))
def test_long_commands_draw_a_bar_per_stage_on_a_terminal_unless_quiet(command, quiet, tmp_path, capsys,
                                                                      monkeypatch):
    from tv_lens.patching import engine

    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    monkeypatch.setattr(engine, "BAR_DELAY", 0)  # tiny models finish before the usual delay
    out = ["--out", str(tmp_path / "v.safetensors")] if command != "evaluate" else []
    args = [command, "--task", "next_letter", "--model", "tiny-llama", "--threads", "1", *SIZES[command], *out]
    assert main(args + (["--quiet"] if quiet else [])) == 0
    err = capsys.readouterr().err
    for stage in STAGES[command]:
        drawn = re.search(rf"{re.escape(stage)}: +\d+%\|.*tok", err)
        assert bool(drawn) != quiet, (stage, err[-500:])


def test_no_progress_bars_when_stdout_is_not_a_terminal(tmp_path, capsys):
    assert main(["reproduce", "--model", "tiny-llama", "--quick", "--tasks", "next_letter", "--out", str(tmp_path),
                 "--no-figures", "--threads", "1"]) == 0
    assert "%|" not in capsys.readouterr().err
