"""Claims: an exclusive lock on one claim file per unit of work or cache entry, so that many processes
(shards, or a rerun started while another is still going) can share one run directory or model cache and
never compute the same unit, or build the same entry, at once. The lock is filelock's on a descriptor
(`flock` on Unix, `LockFileEx` on Windows): the system drops a claim when its holder exits, even when it is
killed, so no stale claim ever blocks a rerun; on a shared filesystem the lock needs `flock` support (NFSv4,
Lustre mounted with `flock`, GPFS)."""

from __future__ import annotations

import errno
import os
import socket
import stat
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from filelock import lock_descriptor

from tv_lens.errors import TvLensError
from tv_lens.files import kind_of

_OPEN = (os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
         | getattr(os, "O_NONBLOCK", 0))  # a FIFO planted as a claim file opens at once, and is refused


class ClaimError(TvLensError):
    """A claim file that cannot be opened or locked; the message says what to do."""


def _holder(fd: int) -> str:
    """Who holds the claim, as its holder wrote it (`pid N on HOST`), or a generic phrase."""
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        text = os.read(fd, 200).decode("utf-8", "replace").strip()
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
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise ClaimError(f"the claim file {path} is {kind_of(mode)}, not a regular file: remove it")
        try:
            if not lock_descriptor(fd, blocking=False):
                on_wait(_holder(fd))
                lock_descriptor(fd)
        except OSError as err:
            raise ClaimError(f"cannot lock {path} ({err.strerror}): this filesystem does not support file locks; "
                             f"use a run directory on one that does") from None
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, f"pid {os.getpid()} on {socket.gethostname()}".encode())
        yield
    finally:
        os.close(fd)
