"""What every `tv-lens` command shares: a parser whose errors are one line, value types that refuse
a bad number before any model loads (`at_least`, `finite_float`), the run options (`--threads`,
`--quiet`) applied before a command's work starts, and the options of the commands that load a model
(`--model` and its placement: `--device`, `--dtype`, `--device-map`, ...). Light on purpose: command
modules import it at the top."""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable

from tv_lens.errors import TvLensError
from tv_lens.tasks.texts import escape_controls

DEFAULT_MODEL = "gemma-3-270m"


class Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line on stderr (exit status 2), naming `--help`;
    `parse` returns None after such an error instead of exiting."""

    def parse(self, argv: list[str] | None) -> argparse.Namespace | None:
        """The parsed arguments, or None after a one-line error (`--help` still exits)."""
        try:
            return self.parse_args(argv)
        except SystemExit as end:
            if end.code == 2:
                return None
            raise

    def error(self, message: str):
        print(f"{self.prog}: error: {escape_controls(message)} (see {self.prog} --help)", file=sys.stderr)
        sys.exit(2)


def at_least(minimum: int) -> Callable[[str], int]:
    """An argparse type: a whole number of at least `minimum`."""
    def whole(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value

    whole.__name__ = f"whole number >= {minimum}"
    return whole


def finite_float(text: str) -> float:
    """An argparse type: a finite number (not nan or inf)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return value


def add_run_options(parser: argparse.ArgumentParser) -> None:
    """Give a command `--threads` and `--quiet`."""
    parser.add_argument("--threads", type=at_least(1), metavar="N",
                        help="pin torch to N CPU threads (default: adapt before each forward pass to the cores "
                             "other processes leave idle, at most torch's own count)")
    parser.add_argument("--quiet", action="store_true",
                        help="no progress bars (they are drawn only when stdout is a terminal anyway)")


def add_shard_option(parser: argparse.ArgumentParser) -> None:
    """Give a command over a run directory `--shard I/N` (checked by `tv_lens.runs.store.Shard.parse`)."""
    parser.add_argument("--shard", metavar="I/N",
                        help="compute only the I-th of N shares of the work (1 <= I <= N) while other processes "
                             "share the run directory; a final run without --shard assembles the results")


def apply_run_options(args: argparse.Namespace) -> None:
    """Check and set what the run options ask for, after the program's own process settings (threads that
    adapt, MKL's strict mode: `tv_lens.threads.program_defaults`); call before the command's work loads torch."""
    from tv_lens import threads
    from tv_lens.progress import set_quiet

    if args.threads is not None and args.threads < 1:
        raise TvLensError(f"--threads must be at least 1, got {args.threads}")
    set_quiet(args.quiet)
    threads.program_defaults()
    if args.threads:
        threads.set_threads(args.threads)


DTYPES = ("float32", "bfloat16", "float16")


def add_model_options(parser: argparse.ArgumentParser, default: str | None = DEFAULT_MODEL,
                      default_text: str | None = None) -> None:
    """Give a command that loads a model `--model` (`default_text` says what a `default` of None means)
    and the placement options (`placement` turns them into `load_model` arguments)."""
    parser.add_argument("--model", default=default,
                        help="an embedded name, a tiny test model, a Hugging Face id, a local folder or a .gguf "
                             f"file (default: {default_text or default})")
    group = parser.add_argument_group("model placement")
    group.add_argument("--device", help="device for the whole model, e.g. cpu, cuda, cuda:1 "
                                        "(default: CUDA when present)")
    group.add_argument("--dtype", choices=DTYPES, default="float32",
                       help="weights and activations precision (default: float32; bfloat16/float16 for GPUs)")
    group.add_argument("--device-map", help="let accelerate place the model over devices instead of --device: "
                                            "auto, balanced or sequential")
    group.add_argument("--max-memory", help="memory per device for --device-map, e.g. 0=20GiB,1=20GiB,cpu=60GiB; "
                                            "what does not fit is offloaded to disk")
    group.add_argument("--offload-folder", help="where --device-map puts weights offloaded to disk "
                                                "(default: a temporary folder)")


def placement(args: argparse.Namespace) -> dict:
    """The `load_model` keyword arguments the placement options of `args` ask for."""
    import torch

    found = {"device": args.device, "dtype": getattr(torch, args.dtype), "device_map": args.device_map,
             "offload_folder": args.offload_folder}
    if args.max_memory:
        found["max_memory"] = parse_max_memory(args.max_memory)
    return found


def parse_max_memory(text: str) -> dict[str | int, str]:
    """`0=20GiB,cpu=60GiB` as accelerate's `{0: "20GiB", "cpu": "60GiB"}`."""
    budget: dict[str | int, str] = {}
    for part in text.split(","):
        device, sep, amount = part.partition("=")
        if not sep or not device.strip() or not amount.strip():
            raise TvLensError(f"--max-memory {text!r}: expected DEVICE=AMOUNT pairs, e.g. 0=20GiB,cpu=60GiB")
        device = device.strip()
        budget[int(device) if device.isdigit() else device] = amount.strip()
    return budget
