"""Atomic file writes: a temporary file created exclusively beside the target, then `os.replace`, so
a reader sees the old file or the whole new one, never half of it. The temporary name is random and
created with O_EXCL|O_NOFOLLOW, so nothing planted in the folder (a symlink, a file of the predicted
name) is ever written through; permissions follow the umask like any new file."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from torch import Tensor

_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)


def _create_temporary(folder: Path, name: str) -> tuple[Path, int]:
    """A new, empty file `.<name>.<random>.tmp` in `folder` that this call created itself."""
    while True:
        tmp = folder / f".{name}.{secrets.token_hex(8)}.tmp"
        try:
            return tmp, os.open(tmp, _CREATE, 0o666)
        except FileExistsError:
            continue


def write_atomically(path: str | os.PathLike, data: bytes) -> Path:
    """Write `data` to `path` (creating its folder) in one visible step, flushed to disk; returns the path.

    A symlink at `path` itself is replaced, not followed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp, fd = _create_temporary(path.parent, path.name)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def check_writable_folder(path: str | os.PathLike) -> Path:
    """Create the folder `path` if needed and prove it takes new files (one created and removed);
    a one-line ValueError saying what is wrong otherwise. Run it before hours of work, not after."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ValueError(f"{path} is not a directory: choose a directory for the output")
    try:
        path.mkdir(parents=True, exist_ok=True)
        tmp, fd = _create_temporary(path, "probe")
        os.close(fd)
        tmp.unlink()
    except OSError as err:
        raise ValueError(f"cannot write into {path} ({err.strerror or err}): choose a writable output "
                         f"directory") from None
    return path


def save_tensors(path: str | os.PathLike, tensors: dict[str, Tensor], metadata: dict[str, str] | None = None) -> Path:
    """Write `tensors` (moved to the CPU) and string `metadata` as one safetensors file, atomically."""
    return write_atomically(path, tensor_bytes(tensors, metadata))


def tensor_bytes(tensors: dict[str, Tensor], metadata: dict[str, str] | None = None) -> bytes:
    """`tensors` (moved to the CPU) and string `metadata` as the bytes of a safetensors file."""
    from safetensors.torch import save

    return save({name: t.detach().cpu().contiguous() for name, t in tensors.items()}, metadata=metadata)
