"""Progress bars with an ETA for long operations (`tqdm.auto`: on stderr in a terminal, a widget in a Jupyter
notebook): shown in a terminal or a notebook, silent elsewhere (a log file, a test) or after `set_quiet(True)`
(`--quiet` on every command). The engine draws one bar per batch of forward passes, labelled by the
innermost `stage` the caller is in (e.g. "layer sweep")."""

from __future__ import annotations

import contextvars
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")
_quiet = False
_STAGE: contextvars.ContextVar[str] = contextvars.ContextVar("tv_lens_stage", default="forward passes")


def set_quiet(quiet: bool) -> None:
    """Silence (or allow) every bar of this process."""
    global _quiet
    _quiet = quiet


def shown() -> bool:
    """Whether bars are drawn now."""
    return not _quiet and (sys.stdout.isatty() or in_notebook())


def in_notebook() -> bool:
    """Whether this process is a Jupyter kernel (the test `tqdm.auto` makes to draw widgets)."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    return shell is not None and "IPKernelApp" in shell.config


def bar(items: Iterable[T], desc: str, *, total: int | None = None, unit: str = "it") -> Iterable[T]:
    """`items`, with a bar that counts them and estimates the time left; it vanishes when done."""
    return tqdm(items, desc=desc, total=total, unit=unit, leave=False, dynamic_ncols=True, file=sys.stderr,
                disable=not shown())


def say(message: str) -> None:
    """Print a line on stdout without tearing a bar being drawn."""
    tqdm.write(message, file=sys.stdout)
    sys.stdout.flush()


def counter(total: int, desc: str, *, unit: str = "it", scale: bool = False, delay: float = 0.0) -> tqdm:
    """A bar to advance by hand (`.update(n)`) over `total` steps (with `scale`, counted as 12.3k),
    drawn once `delay` seconds have passed (short work draws nothing); use it as a context manager."""
    return tqdm(total=total, desc=desc, unit=unit, unit_scale=scale, leave=False, dynamic_ncols=True,
                file=sys.stderr, delay=delay, disable=not shown())


@contextmanager
def stage(name: str) -> Iterator[None]:
    """Within the block, the engine's bars are labelled `name` (the innermost stage wins)."""
    token = _STAGE.set(name)
    try:
        yield
    finally:
        _STAGE.reset(token)


def current_stage() -> str:
    """The label of the engine's bars here ("forward passes" outside any `stage`)."""
    return _STAGE.get()
