"""The `tv-lens` program: the library's commands (`models`, `tasks`, `learn`, `apply`, `generate`, `evaluate`,
`fv`) and those that installed packages register in the `tv_lens.commands` entry-point group (the experiments'
`reproduce` and `figures`: the library never imports its experiments). `python -m tv_lens.cli.main` is `tv-lens`.

Adding a command, so that `tv-lens --help` stays under a second:
- write `add_commands(commands)` in a module `tv_lens/cli/<topic>.py` whose top-level imports are the
  standard library and `tv_lens.cli.options` only; register each command with
  `commands.add_parser(name, help=..., description=...)` and `.set_defaults(run=function)`;
- import torch, TransformerLens, plotly, the model code... inside `function(args)`, never at the top
  (tests/test_cli.py checks that building the parser imports none of them);
- add the module's `add_commands` to `COMMANDS` below (or, in another package, name it in the
  `tv_lens.commands` entry-point group of that package's metadata);
- show long loops with `tv_lens.progress.bar(items, "what", unit="task")` (an ETA on a terminal, silent
  otherwise and under `--quiet`) and print lines with `tv_lens.progress.say`; the engine's forward
  passes draw their own bars, named by `with tv_lens.progress.stage("what"):` around them.
Every command gets the run options of `tv_lens.cli.options` (`--threads`, `--quiet`), applied before it
runs; a `TvLensError` (or another `ValueError`), `OSError` or `FloatingPointError` it raises becomes one line
`tv-lens: error: ...`.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Callable, Sequence
from importlib.metadata import entry_points
from typing import TextIO

from tv_lens import __version__
from tv_lens.cli import evaluate as cli_evaluate
from tv_lens.cli import fv as cli_fv
from tv_lens.cli import generate as cli_generate
from tv_lens.cli import vectors as cli_vectors
from tv_lens.cli.options import Parser, add_run_options, apply_run_options
from tv_lens.tasks.texts import escape_controls

AddCommands = Callable[..., None]  # registers commands on the action of ArgumentParser.add_subparsers()


def _models(args: argparse.Namespace) -> None:
    from tv_lens.models.loading import EMBEDDED

    print(f"{'name':<15} {'installed':<10} {'size':>9}  package")
    for model in EMBEDDED.values():
        size = model.size_bytes()
        if size is None:
            print(f"{model.name:<15} {'no':<10} {'-':>9}  install with: {model.install}")
        else:
            print(f"{model.name:<15} {'yes':<10} {size / 2**20:>5.0f} MiB  {model.package}")


def _tasks(args: argparse.Namespace) -> None:
    from tv_lens.cli.tasks import file_table, format_task_table, task_table

    tokenizer = None
    if args.model:  # the model code imports torch: seconds that listing the tasks does not need
        from tv_lens.models.loading import load_tokenizer

        tokenizer = load_tokenizer(args.model)
    rows = file_table(args.files, tokenizer, args.scoring) if args.files else task_table(tokenizer)
    print(format_task_table(rows))


def _show_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                  file: TextIO | None = None, line: str | None = None) -> None:
    """Warnings in one line, as errors are (not Python's two, with a line of our source)."""
    print(f"tv-lens: warning: {escape_controls(str(message))}", file=sys.stderr)


def add_commands(commands) -> None:
    """Register `models` and `tasks`."""
    commands.add_parser("models", help="list the embedded models",
                        description="List the models that ship inside PyPI packages: installed or not, their "
                                    "size, and the command that installs them.").set_defaults(run=_models)
    tasks = commands.add_parser("tasks", help="list the tasks, or check task files, with their pair counts",
                                description="List the tasks (the paper's 18, the compound list tasks of the "
                                            "composition experiment and registered ones), or the task "
                                            "files given, with their pair counts, before and after a model's "
                                            "single-token filter, and the prompt variant the protocol chooses.")
    tasks.add_argument("files", nargs="*", metavar="FILE",
                       help="task files (.json, .jsonl, .csv) to check: pairs read, merged, kept, dropped")
    tasks.add_argument("--model", help="also count the pairs left by the single-token filter of this model")
    tasks.add_argument("--scoring", default="exact", choices=("exact", "prefix", "any_of"),
                       help="how the files' answers are scored (default exact; prefix for facts)")
    tasks.set_defaults(run=_tasks)


COMMANDS: tuple[AddCommands, ...] = (add_commands, cli_vectors.add_commands, cli_generate.add_commands,
                                      cli_evaluate.add_commands, cli_fv.add_commands)


def registered_commands() -> list[AddCommands]:
    """The `add_commands` of every installed package that registers commands (group `tv_lens.commands`)."""
    return [entry.load() for entry in sorted(entry_points(group="tv_lens.commands"), key=lambda e: e.name)]


def build_parser(extra: Sequence[AddCommands] | None = None) -> Parser:
    """The parser of the library's commands and of `extra` ones (default: the registered ones); every command gets
    the run options."""
    extra = registered_commands() if extra is None else extra
    parser = Parser(
        prog="tv-lens",
        description="Task vectors of in-context learning (Hendel et al. 2023) on TransformerLens.",
    )
    parser.add_argument("--version", action="version", version=f"tv-lens {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    for add in (*COMMANDS, *extra):
        add(commands)
    for command in set(commands.choices.values()):
        add_run_options(command)
    return parser


def main(argv: list[str] | None = None, extra: Sequence[AddCommands] | None = None) -> int:
    """Run one command; its errors end as one line on stderr and exit status 2."""
    args = build_parser(extra).parse(argv)
    if args is None:  # a bad argument, said in one line
        return 2
    from huggingface_hub.utils import logging as hub_logging

    hub_logging.set_verbosity_error()  # offline, each hub retry would print a warning before our one-line error
    warnings.showwarning = _show_warning
    try:
        apply_run_options(args)
        args.run(args)
    except (ValueError, OSError, FloatingPointError) as err:
        print(f"tv-lens: error: {escape_controls(str(err))}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
