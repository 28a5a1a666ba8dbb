"""Files as tv_lens writes and reads them: the one path every result, table, figure, vector file and cache
entry takes to disk.

Writes are atomic: the bytes go to a temporary file created exclusively (O_EXCL|O_NOFOLLOW, random name)
beside the target, are flushed to disk, and the file is renamed over the target, so a reader sees the old
file or the whole new one, never half of one; a symlink at the target is replaced, never followed; a kill
leaves at most a hidden `.NAME.*.tmp` file. A write that fails (a full disk, a read-only place) removes its
temporary file and raises a one-line `FileWriteError` naming the file. Permissions follow the umask.

Reads of what tv_lens wrote (unit records, results, cache entries) take regular files only, of bounded
size: a FIFO, a device, a symlink or an oversized file is a one-line `FileReadError`, never a hang or an
endless read.
"""

from __future__ import annotations

import errno
import os
import re
import secrets
import shutil
import stat
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from torch import Tensor

from tv_lens.errors import TvLensError

_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
_READ = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
_KINDS = {stat.S_IFIFO: "a FIFO", stat.S_IFCHR: "a character device", stat.S_IFBLK: "a block device",
          stat.S_IFSOCK: "a socket", stat.S_IFDIR: "a directory", stat.S_IFLNK: "a symlink"}


class FileWriteError(TvLensError):
    """A file could not be written (a full disk, a read-only place); the message names it and says what to do."""


class FileReadError(TvLensError):
    """A file is not one tv_lens reads: not a regular file (a FIFO, a device, a symlink) or larger than its cap."""


def _hint(err: OSError) -> str:
    if err.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
        return "free some space there, or write elsewhere"
    if err.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return "choose a writable place"
    if err.errno == errno.EISDIR:
        return "a directory is in the way: move it"
    return "check that folder"


def write_error(path: str | os.PathLike, err: OSError) -> FileWriteError:
    """The one-line error for `path` not written because of `err`."""
    return FileWriteError(f"cannot write {path} ({err.strerror or err}): {_hint(err)}")


def _create_temporary(folder: Path, name: str, suffix: str = "") -> tuple[Path, int]:
    """A new, empty file `.<name>.<random>.tmp<suffix>` in `folder` that this call created itself."""
    while True:
        tmp = folder / f".{name}.{secrets.token_hex(8)}.tmp{suffix}"
        try:
            return tmp, os.open(tmp, _CREATE, 0o666)
        except FileExistsError:
            continue


def write_atomically(path: str | os.PathLike, data: bytes) -> Path:
    """Write `data` to `path` (creating its folder) in one visible step, flushed to disk; returns the path.

    A symlink at `path` itself is replaced, not followed; a failure is a `FileWriteError` and leaves `path`
    as it was."""
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp, fd = _create_temporary(path.parent, path.name)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as err:
        raise write_error(path, err) from None
    finally:
        if tmp is not None:
            tmp.unlink(missing_ok=True)
    return path


@contextmanager
def writing_atomically(paths: Sequence[str | os.PathLike]) -> Iterator[list[Path]]:
    """For a writer that opens files itself (kaleido, `save_pretrained`): one empty temporary file beside each
    of `paths`, created exclusively and ending in the target's suffix (writers choose the format by it). When
    the block ends they are flushed and each renamed over its path; if it raises, they are all removed."""
    targets = [Path(p) for p in paths]
    temporaries: list[Path] = []
    try:
        for target in targets:
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp, fd = _create_temporary(target.parent, target.name, target.suffix)
            os.close(fd)
            temporaries.append(tmp)
    except OSError as err:
        for tmp in temporaries:
            tmp.unlink(missing_ok=True)
        raise write_error(targets[len(temporaries)], err) from None
    try:
        yield temporaries
        for tmp, target in zip(temporaries, targets):
            try:
                _flush(tmp)
                os.replace(tmp, target)
            except OSError as err:
                raise write_error(target, err) from None
    finally:
        for tmp in temporaries:
            tmp.unlink(missing_ok=True)


def _flush(path: Path) -> None:
    """Flush a file another writer wrote (and closed) to disk; refuse one it left empty or replaced."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0))
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_size == 0:
            raise OSError(errno.EIO, "the writer left it empty")
        os.fsync(fd)
    finally:
        os.close(fd)


def replace_directory(finished: str | os.PathLike, target: str | os.PathLike) -> Path:
    """Move the finished directory `finished` (a temporary sibling of `target`) to `target` in one rename; an
    existing target is moved aside first and then deleted, a symlink there removed, never followed. Callers
    hold the target's claim (`tv_lens.claims`), so no one else renames it meanwhile."""
    finished, target = Path(finished), Path(target)
    aside = None
    try:
        if target.is_symlink() or (target.exists() and not target.is_dir()):
            target.unlink()
        elif target.exists():
            aside = target.parent / f".{target.name}.{secrets.token_hex(8)}.old"
            os.rename(target, aside)
        os.rename(finished, target)
    except OSError as err:
        raise write_error(target, err) from None
    finally:
        if aside is not None:
            shutil.rmtree(aside, ignore_errors=True)
    return target


def kind_of(mode: int) -> str:
    """What a file of `mode` is, in words ('a FIFO', 'a symlink', ...)."""
    return _KINDS.get(stat.S_IFMT(mode), "not a regular file")


def regular_size(path: str | os.PathLike, limit: int, follow: bool = False) -> int:
    """The size of the regular file `path` (through a symlink only with `follow`); a `FileReadError` for
    anything else or a file over `limit` bytes; FileNotFoundError when absent."""
    info = os.stat(path) if follow else os.lstat(path)
    if not stat.S_ISREG(info.st_mode):
        raise FileReadError(f"{path} is {kind_of(info.st_mode)}, not a regular file")
    if info.st_size > limit:
        raise FileReadError(f"{path} is larger ({info.st_size:,} bytes) than any file tv_lens writes there "
                            f"({limit:,})")
    return info.st_size


def read_regular(path: str | os.PathLike, limit: int, follow: bool = False) -> bytes:
    """The bytes of the regular file `path`, at most `limit` of them: a FIFO, a device, a symlink (unless
    `follow`) or a larger file is a one-line `FileReadError`, checked before and after opening, so reading never
    blocks or runs on; FileNotFoundError when absent, other OSErrors as raised."""
    regular_size(path, limit, follow)
    try:
        fd = os.open(path, _READ | (0 if follow else getattr(os, "O_NOFOLLOW", 0)))
    except OSError as err:
        if err.errno == errno.ELOOP:
            raise FileReadError(f"{path} is a symlink, not a regular file") from None
        raise
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):  # replaced between the two looks
            raise FileReadError(f"{path} is {kind_of(info.st_mode)}, not a regular file")
        data = f.read(limit + 1)
    if len(data) > limit:
        raise FileReadError(f"{path} is larger than any file tv_lens writes there ({limit:,} bytes)")
    return data


def safe_name(text: str, default: str = "model") -> str:
    """`text` as one harmless path component: other characters than letters, digits, '_', '-' and '.' become
    '_', and a name that is empty or starts with a dot ('..', '.', '.hidden') gets `default` or a prefix."""
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", text)[:120]
    if not name.strip("."):
        return default
    return f"{default}_{name}" if name.startswith(".") else name


def check_writable_folder(path: str | os.PathLike) -> Path:
    """Create the folder `path` if needed and prove it takes new files (one created and removed);
    a one-line TvLensError saying what is wrong otherwise. Run it before hours of work, not after."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise TvLensError(f"{path} is not a directory: choose a directory for the output")
    try:
        path.mkdir(parents=True, exist_ok=True)
        tmp, fd = _create_temporary(path, "probe")
        os.close(fd)
        tmp.unlink()
    except OSError as err:
        raise TvLensError(f"cannot write into {path} ({err.strerror or err}): choose a writable output "
                          f"directory") from None
    return path


def save_tensors(path: str | os.PathLike, tensors: dict[str, Tensor], metadata: dict[str, str] | None = None) -> Path:
    """Write `tensors` (moved to the CPU) and string `metadata` as one safetensors file, atomically."""
    return write_atomically(path, tensor_bytes(tensors, metadata))


def tensor_bytes(tensors: dict[str, Tensor], metadata: dict[str, str] | None = None) -> bytes:
    """`tensors` (moved to the CPU) and string `metadata` as the bytes of a safetensors file."""
    from safetensors.torch import save

    return save({name: t.detach().cpu().contiguous() for name, t in tensors.items()}, metadata=metadata)
