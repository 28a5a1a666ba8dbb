"""Atomic file writes: a temporary file beside the target, then `os.replace`, so a reader sees the
old file or the whole new one, never half of it; permissions follow the umask like any new file."""

from __future__ import annotations

import os
from pathlib import Path

from torch import Tensor


def write_atomically(path: str | os.PathLike, data: bytes) -> Path:
    """Write `data` to `path` (creating its folder) in one visible step; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def save_tensors(path: str | os.PathLike, tensors: dict[str, Tensor], metadata: dict[str, str] | None = None) -> Path:
    """Write `tensors` (moved to the CPU) and string `metadata` as one safetensors file, atomically."""
    from safetensors.torch import save

    data = save({name: t.detach().cpu().contiguous() for name, t in tensors.items()}, metadata=metadata)
    return write_atomically(path, data)
