"""`tv-lens reproduce`: every experiment of the paper on one model (the work is in `analyses/`)."""

from __future__ import annotations

import argparse
from pathlib import Path

DEFAULT_MODEL = "gemma-3-270m"


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of `tv-lens reproduce` and `python -m analyses.reproduce`."""
    p.add_argument("--model", default=DEFAULT_MODEL,
                   help=f"embedded name, HF id, local dir or .gguf (default {DEFAULT_MODEL}, embedded)")
    p.add_argument("--quick", action="store_true",
                   help="smoke run: a few tasks, a few items each (under 2 minutes on the embedded model)")
    p.add_argument("--out", type=Path, help="run directory (default runs/<model>, runs/<model>-quick with --quick)")
    p.add_argument("--tasks", nargs="+", help="task names or task files (default: the paper's 18)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int,
                   help="torch CPU threads (default: torch's choice); 1 on a machine busy with other jobs, "
                        "where competing threads can make a run 10x slower")


def run(args: argparse.Namespace) -> None:
    try:
        from analyses.reproduce import run_from_args
    except ModuleNotFoundError as err:
        if err.name != "analyses":
            raise
        raise ValueError("the analyses package is not importable: run from the repository root "
                         "(python -m analyses.reproduce) or install tv-lens with it (pip install -e .)") from None
    run_from_args(args)


def add_commands(commands) -> None:
    """Add `reproduce` to the `tv-lens` subcommands."""
    p = commands.add_parser("reproduce", help="run every experiment of the paper on one model and print the tables")
    add_arguments(p)
    p.set_defaults(run=run)
