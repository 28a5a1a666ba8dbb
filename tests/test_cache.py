"""The model cache (issue 22, item 4): an entry is built whole or not at all (a kill at any point of a first
build leaves nothing half-built), never through a symlink, and checked at each use: a damaged, truncated,
edited or replaced entry is rebuilt with one warning line, a whole one is used at the cost of a stat per file."""

import errno
import hashlib
import json
import os
import warnings
from pathlib import Path

import pytest
import torch

from tv_lens.models import cache
from tv_lens.models.cache import CacheError, assembled_file, cached_directory, check_directory
from tv_lens.models.loading import load_model
from tv_lens.models.provenance import fingerprint


class Killed(BaseException):
    """The process dies here."""


def build_into(files: dict[str, bytes], extra: dict | None = None):
    def build(folder: Path) -> dict:
        for name, data in files.items():
            (folder / name).write_bytes(data)
        return extra or {}
    return build


def rebuilt(call) -> list[str]:
    """The warning lines `call()` gives."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        call()
    return [str(w.message) for w in caught]


FILES = {"model.safetensors": b"w" * 1000, "config.json": b"{}"}


def test_an_entry_is_built_once_with_its_manifest(tmp_path):
    target = tmp_path / "entry"
    manifest = cached_directory(target, build_into(FILES, {"fingerprint": "f"}), "test entry")
    assert manifest["fingerprint"] == "f" and set(manifest["files"]) == set(FILES)
    assert manifest["files"]["model.safetensors"]["sha256"] == hashlib.sha256(FILES["model.safetensors"]).hexdigest()
    assert json.loads((target / "tv_lens.json").read_text()) == manifest
    again = cached_directory(target, lambda folder: pytest.fail("rebuilt a whole entry"), "test entry")
    assert again == manifest


@pytest.mark.parametrize("damage, says", [
    (lambda e: (e / "model.safetensors").write_bytes(b"w" * 500), "of 500 bytes, not 1,000 (truncated or replaced)"),
    (lambda e: (e / "model.safetensors").write_bytes(b"v" * 1000), "its SHA-256 differs: damaged or edited"),
    (lambda e: ((e / "config.json").unlink(), os.mkfifo(e / "config.json")), "has a FIFO as 'config.json'"),
    (lambda e: ((e / "config.json").unlink(), (e / "config.json").symlink_to("/dev/zero")),
     "has a symlink as 'config.json'"),
    (lambda e: (e / "generation_config.json").write_text("{}"), "holds 'generation_config.json'"),
    (lambda e: (e / "config.json").unlink(), "lacks 'config.json'"),
    (lambda e: (e / "tv_lens.json").write_text("{"), "cannot be checked"),
    (lambda e: (e / "tv_lens.json").write_text('{"fingerprint": "f"}'), "an older tv_lens wrote it"),
])
def test_a_damaged_entry_is_rebuilt_with_one_line(tmp_path, damage, says):
    target = tmp_path / "entry"
    cached_directory(target, build_into(FILES), "test entry")
    damage(target)
    lines = rebuilt(lambda: cached_directory(target, build_into(FILES), "test entry"))
    assert len(lines) == 1 and says in lines[0] and lines[0].endswith(": rebuilding it"), lines
    assert "\n" not in lines[0] and check_directory(target)[1] is None
    assert (target / "model.safetensors").read_bytes() == FILES["model.safetensors"]


def test_a_copied_entry_is_verified_once_then_trusted_by_its_new_stamps(tmp_path, monkeypatch):
    import shutil

    cached_directory(tmp_path / "entry", build_into(FILES), "test entry")
    shutil.copytree(tmp_path / "entry", tmp_path / "copy")  # new inodes and change times, same contents
    digests = []
    real = cache.file_sha256
    monkeypatch.setattr(cache, "file_sha256", lambda path: (digests.append(path.name), real(path))[1])
    assert rebuilt(lambda: check_directory(tmp_path / "copy")) == []
    assert sorted(digests) == sorted(FILES)
    digests.clear()
    assert check_directory(tmp_path / "copy")[0] is not None and digests == []


def test_a_kill_while_restamping_the_manifest_costs_no_rebuild(tmp_path):
    import shutil

    cached_directory(tmp_path / "entry", build_into(FILES), "test entry")
    shutil.copytree(tmp_path / "entry", tmp_path / "copy")
    (tmp_path / "copy" / ".tv_lens.json.0123456789abcdef.tmp").write_text("{")  # the restamp's temporary, killed
    assert rebuilt(lambda: cached_directory(tmp_path / "copy", lambda f: pytest.fail("rebuilt"), "test entry")) == []


def test_a_kill_at_any_point_of_a_first_build_leaves_no_entry_and_the_next_build_cleans_up(tmp_path):
    target = tmp_path / "entry"

    def dies(folder: Path) -> dict:
        (folder / "model.safetensors").write_bytes(b"half")
        raise Killed

    with pytest.raises(Killed):
        cached_directory(target, dies, "test entry")
    assert not target.exists()
    leftover = tmp_path / ".entry-abc"  # what a SIGKILL leaves (the block above cleaned its own)
    leftover.mkdir()
    (leftover / "model.safetensors").write_bytes(b"half")
    assert rebuilt(lambda: cached_directory(target, build_into(FILES), "test entry")) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == [".entry.claim", "entry"]


def test_a_full_disk_during_a_build_is_one_line_naming_the_entry(tmp_path):
    def full(folder: Path) -> dict:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with pytest.raises(CacheError) as err:
        cached_directory(tmp_path / "entry", full, "test entry")
    assert str(err.value) == (f"cannot write {tmp_path / 'entry'} (No space left on device): free some space there, "
                              f"or write elsewhere, or set TV_LENS_CACHE to a writable folder")
    assert [p.name for p in tmp_path.iterdir()] == [".entry.claim"]


PARTS = [b"GGUF" + b"a" * 5000, b"b" * 3000]
SHA = hashlib.sha256(b"".join(PARTS)).hexdigest()


@pytest.fixture
def parts(tmp_path):
    paths = []
    for i, data in enumerate(PARTS):
        paths.append(tmp_path / f"part{i}")
        paths[-1].write_bytes(data)
    return paths


def test_a_file_is_assembled_atomically_and_a_kill_mid_assembly_breaks_no_later_load(tmp_path, parts, monkeypatch):
    target = tmp_path / "gguf" / "model.gguf"
    real = os.replace
    monkeypatch.setattr("tv_lens.files.os.replace", lambda *a: (_ for _ in ()).throw(Killed))
    with pytest.raises(Killed):
        assembled_file(target, parts, SHA, "test GGUF")
    assert not target.exists()
    monkeypatch.setattr("tv_lens.files.os.replace", real)
    assert rebuilt(lambda: assembled_file(target, parts, SHA, "test GGUF")) == []
    assert target.read_bytes() == b"".join(PARTS)


def test_a_dangling_symlink_at_the_file_is_replaced_and_nothing_written_outside(tmp_path, parts):
    target = tmp_path / "gguf" / "model.gguf"
    target.parent.mkdir()
    outside = tmp_path / "outside" / "big.gguf"
    target.symlink_to(outside)
    lines = rebuilt(lambda: assembled_file(target, parts, SHA, "test GGUF"))
    assert len(lines) == 1 and "is a symlink, not a regular file" in lines[0]
    assert not outside.exists() and not outside.parent.exists() and not target.is_symlink()
    assert target.read_bytes() == b"".join(PARTS)


def test_a_damaged_file_is_reassembled_and_damaged_parts_are_one_line(tmp_path, parts):
    target = assembled_file(tmp_path / "model.gguf", parts, SHA, "test GGUF")
    target.write_bytes(b"GGUF" + b"a" * 100)
    lines = rebuilt(lambda: assembled_file(target, parts, SHA, "test GGUF"))
    assert len(lines) == 1 and "does not match its SHA-256" in lines[0]
    parts[1].write_bytes(b"c" * 3000)
    target.unlink()
    with pytest.raises(CacheError, match="the parts of test GGUF do not assemble into the file they state") as err:
        assembled_file(target, parts, SHA, "test GGUF")
    assert "\n" not in str(err.value) and not target.exists()


@torch.no_grad()
def test_loading_rebuilds_damaged_processed_weights_under_the_same_fingerprint(tmp_path, monkeypatch):
    monkeypatch.setenv("TV_LENS_CACHE", str(tmp_path))
    reference = load_model("tiny-llama", device_map={"": "cpu"})
    tokens = reference.to_tokens(["abc->d"])
    expected = reference(tokens)
    weights = next(tmp_path.glob("models/*/compat-tl*/model.safetensors"))
    data = bytearray(weights.read_bytes())
    data[-8:] = b"\x00" * 8  # an edit of the last weights, size kept
    weights.write_bytes(bytes(data))
    lines = rebuilt(lambda: load_model("tiny-llama", device_map={"": "cpu"}))
    assert len(lines) == 1 and "SHA-256 differs" in lines[0]
    weights.write_bytes(weights.read_bytes()[:1000])  # truncated
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = load_model("tiny-llama", device_map={"": "cpu"})
    assert len(caught) == 1 and "truncated or replaced" in str(caught[0].message)
    assert torch.equal(model(tokens), expected) and fingerprint(model) == fingerprint(reference)
