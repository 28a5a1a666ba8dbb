"""Progress bars with an ETA for long operations (tqdm, drawn on stderr): shown while stdout is a
terminal, silent when it is not (a log file, a notebook, a test) or after `set_quiet(True)`
(`--quiet` on every command)."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import TypeVar

from tqdm import tqdm

T = TypeVar("T")
_quiet = False


def set_quiet(quiet: bool) -> None:
    """Silence (or allow) every bar of this process."""
    global _quiet
    _quiet = quiet


def shown() -> bool:
    """Whether bars are drawn now."""
    return not _quiet and sys.stdout.isatty()


def bar(items: Iterable[T], desc: str, *, total: int | None = None, unit: str = "it") -> Iterable[T]:
    """`items`, with a bar that counts them and estimates the time left; it vanishes when done."""
    return tqdm(items, desc=desc, total=total, unit=unit, leave=False, dynamic_ncols=True, file=sys.stderr,
                disable=not shown())


def say(message: str) -> None:
    """Print a line on stdout without tearing a bar being drawn."""
    tqdm.write(message, file=sys.stdout)
    sys.stdout.flush()


def counter(total: int, desc: str, *, unit: str = "it") -> tqdm:
    """A bar to advance by hand (`.update()`) over `total` steps; use it as a context manager."""
    return tqdm(total=total, desc=desc, unit=unit, leave=False, dynamic_ncols=True, file=sys.stderr,
                disable=not shown())
