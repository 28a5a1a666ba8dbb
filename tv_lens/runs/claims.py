"""Claims: an exclusive advisory lock (`flock`) on one claim file per unit of work, so that many
processes (shards, or a rerun started while another is still going) can share one run directory
and never compute the same unit at once. The kernel drops a claim when its holder exits, even when
it is killed, so no stale claim ever blocks a rerun; on a shared filesystem the lock needs
`flock` support (NFSv4, Lustre mounted with `flock`, GPFS)."""

from __future__ import annotations

import errno
import fcntl
import os
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from tv_lens.errors import TvLensError

_OPEN = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)


class ClaimError(TvLensError):
    """A claim file that cannot be opened or locked; the message says what to do."""


def _holder(fd: int) -> str:
    """Who holds the claim, as its holder wrote it (`pid N on HOST`), or a generic phrase."""
    try:
        text = os.pread(fd, 200, 0).decode("utf-8", "replace").strip()
    except OSError:
        text = ""
    return text or "another process"


@contextmanager
def claimed(path: str | os.PathLike, on_wait: Callable[[str], None]) -> Iterator[None]:
    """Hold the claim `path` (created if needed, never through a symlink) for the block. If another
    process holds it, call `on_wait` once with who holds it, then wait until it is released."""
    path = Path(path)
    try:
        fd = os.open(path, _OPEN, 0o666)
    except OSError as err:
        hint = "it is a symlink; remove it" if err.errno == errno.ELOOP else "check the run directory's permissions"
        raise ClaimError(f"cannot open the claim file {path} ({err.strerror}): {hint}") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            on_wait(_holder(fd))
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError as err:
            raise ClaimError(f"cannot lock {path} ({err.strerror}): this filesystem does not support flock; "
                             f"use a run directory on one that does") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}".encode(), 0)
        yield
    finally:
        os.close(fd)
