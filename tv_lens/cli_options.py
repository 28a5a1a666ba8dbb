"""What every `tv-lens` command shares: the default model, and the run options (`--threads`) applied
before a command's work starts. Light on purpose: command modules import it at the top."""

from __future__ import annotations

import argparse

DEFAULT_MODEL = "gemma-3-270m"


def add_run_options(parser: argparse.ArgumentParser) -> None:
    """Give a command `--threads`."""
    parser.add_argument("--threads", type=int, metavar="N",
                        help="torch CPU threads (default: torch's choice); 1 on a machine busy with other jobs, "
                             "where competing threads can make a run 10x slower")


def apply_run_options(args: argparse.Namespace) -> None:
    """Set what the run options ask for; call before the command's work."""
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
