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


def add_shard_option(parser: argparse.ArgumentParser) -> None:
    """Give a command over a run directory `--shard I/N` (checked by `tv_lens.results.Shard.parse`)."""
    parser.add_argument("--shard", metavar="I/N",
                        help="compute only the I-th of N shares of the work (1 <= I <= N) while other processes "
                             "share the run directory; a final run without --shard assembles the results")


def apply_run_options(args: argparse.Namespace) -> None:
    """Check and set what the run options ask for; call before the command's work."""
    if args.threads is not None and args.threads < 1:
        raise ValueError(f"--threads must be at least 1, got {args.threads}")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
