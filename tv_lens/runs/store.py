"""Results on disk: one folder per analysis in a run directory, one self-verifying record per
finished unit of work (usually a task), and a final versioned `results.json`.

A unit is `units/<key>.json`, holding the run's header (schema version, analysis, model fingerprint,
settings, seed), the unit's result, the name and SHA-256 of its tensor file
(`units/<key>~<digest>.safetensors`, named by its own digest and written first) and the digest of
the record itself. The record's atomic rename is the one step that makes a unit finished, so a
process killed between the two writes leaves the previous unit whole. A unit is reused only when its
header matches the current run, both digests check out and its numbers agree with its per-item records;
otherwise it is recomputed, with one line saying why when it was damaged. Only regular files of bounded
size are read (a FIFO, a device, a symlink is recomputed, never read). Several processes may work in one
run directory: each unit is computed under a claim (`tv_lens.claims`), so no unit is computed twice at
once, and a `Shard` chooses which units a process starts.

The results file names the unit records it was assembled from, with their digests (`sources`), and its
own digest, so a reader can tell results of this run directory from results copied in or left from
another configuration (`tv_lens.runs.reading`). The digests guard against accidents (a damaged file, a
file copied from another run, an editor's slip), not against someone who can write the directory: they
can recompute a digest as well as tv_lens.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from torch import Tensor

from tv_lens.claims import claimed
from tv_lens.codec import Record, ResultsError, decode, encode
from tv_lens.errors import TvLensError
from tv_lens.files import FileReadError, read_regular, tensor_bytes, write_atomically
from tv_lens.models.bridge import Model
from tv_lens.models.provenance import model_provenance, versions
from tv_lens.runs.records import (
    ANALYSES,
    SCHEMA_VERSION,
    UNIT_SCHEMA_VERSIONS,
    Results,
    Source,
    results_from_dict,
)

RESULTS_FILE = "results.json"
UNITS = "units"
JSON_LIMIT = 256 << 20
"""The largest unit record or results file read (bytes): far above any written (a few MB at most)."""
TENSORS_LIMIT = 2 << 30
"""The largest tensor file of a unit read (bytes): far above any written (tens of MB for a 7B model)."""


def strict(data):
    """`data` as strict JSON values: tuples become lists, NaN and infinities become None (null)."""
    if isinstance(data, float):
        return data if math.isfinite(data) else None
    if isinstance(data, dict):
        return {key: strict(value) for key, value in data.items()}
    if isinstance(data, (list, tuple)):
        return [strict(value) for value in data]
    return data


def to_json(data) -> bytes:
    """`data` as strict JSON (no NaN: undefined numbers are null)."""
    return json.dumps(strict(data), indent=1, allow_nan=False).encode()


def _reject_constant(name: str):
    raise ValueError(f"{name} is not JSON")


def parse_json(data: bytes):
    """The JSON value in `data` (UTF-8, strict: no NaN or Infinity); ValueError, RecursionError if not."""
    return json.loads(data.decode("utf-8"), parse_constant=_reject_constant)


def read_json(path: Path) -> dict:
    """The JSON object in the regular file `path` (of at most JSON_LIMIT bytes), or a one-line ResultsError."""
    try:
        data = parse_json(read_regular(path, JSON_LIMIT))
    except FileNotFoundError:
        raise ResultsError(f"{path} does not exist: run the analysis first") from None
    except FileReadError as err:
        raise ResultsError(f"{err}: delete it and rerun") from None
    except (OSError, ValueError, RecursionError) as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ResultsError(f"{path} is not a readable JSON file ({reason}): delete it and rerun") from None
    if not isinstance(data, dict):
        raise ResultsError(f"{path} holds a {type(data).__name__}, not a results object")
    return data


def write_json(path: Path, data: dict) -> None:
    """Write `data` to `path` as strict JSON, atomically; a one-line FileWriteError if it cannot be written."""
    write_atomically(path, to_json(data))


def plain(data):
    """`data` as JSON gives it back (tuples become lists), so saved and current settings compare equal."""
    return json.loads(to_json(data))


def unit_filename(key: str) -> str:
    """A safe file stem for a unit key (task names may hold any character); never holds '~'."""
    if re.fullmatch(r"[A-Za-z0-9_.-]{1,80}", key) and not key.startswith("."):
        return key
    return re.sub(r"[^A-Za-z0-9_-]", "_", key)[:40] + "-" + hashlib.sha256(key.encode()).hexdigest()[:8]


def record_digest(record: dict) -> str:
    """SHA-256 of a unit record or results file without its own `digest` field, in a canonical JSON form."""
    body = {k: v for k, v in record.items() if k != "digest"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()).hexdigest()


@dataclass(frozen=True)
class Shard:
    """Process `index` of `count` (1-based, like `--shard 2/4`) sharing a run directory with others:
    it starts only its share of the units; claims make sure no unit is computed twice."""

    index: int
    count: int

    def __post_init__(self) -> None:
        if not (isinstance(self.index, int) and isinstance(self.count, int) and 1 <= self.index <= self.count):
            raise TvLensError(f"a shard is I/N with 1 <= I <= N, got {self.index}/{self.count}")

    @classmethod
    def parse(cls, text: str) -> Shard:
        """'I/N' -> Shard(I, N)."""
        index, sep, count = text.partition("/")
        if not (sep and index.strip().isdigit() and count.strip().isdigit()):
            raise TvLensError(f"--shard takes I/N (this process is shard I of N, 1 <= I <= N), got {text!r}")
        return cls(int(index), int(count))

    def share(self, names: Sequence[str]) -> list[str]:
        """This shard's names among `names`: every count-th of them in sorted order, kept in given order."""
        mine = set(sorted(set(names))[self.index - 1::self.count])
        return [n for n in names if n in mine]

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


@dataclass(frozen=True)
class Unit:
    """A finished unit of work: its result (the analysis's unit record; a plain object for an
    analysis without one) and its tensors, both checked against their digests."""

    key: str
    result: Record | dict
    tensors: dict[str, Tensor] = field(default_factory=dict)
    analysis: str = ""
    digest: str = ""

    @property
    def source(self) -> Source:
        """This unit as a source of results: its analysis, key and record digest."""
        return Source(self.analysis, self.key, self.digest)


@dataclass
class Store:
    """The folder `run_dir/analysis`: finished units under `units/` and the final results file.
    `progress` gets the store's one-line notices (a damaged unit recomputed, waiting for a claim)."""

    run_dir: Path
    analysis: str
    model: dict
    settings: dict
    seed: int
    progress: Callable[[str], None] = print
    computed: list[str] = field(default_factory=list)
    reused: list[str] = field(default_factory=list)

    @classmethod
    def open(cls, run_dir: str | Path, analysis: str, model: Model, settings: dict, seed: int,
             progress: Callable[[str], None] = print) -> Store:
        return cls(Path(run_dir), analysis, model_provenance(model), plain(settings), seed, progress)

    @property
    def folder(self) -> Path:
        return self.run_dir / self.analysis

    @property
    def results_path(self) -> Path:
        return self.folder / RESULTS_FILE

    def header(self) -> dict:
        return {"schema_version": SCHEMA_VERSION, "analysis": self.analysis, "model": self.model,
                "settings": self.settings, "seed": self.seed, "versions": versions(),
                "written_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}

    def _record_path(self, key: str) -> Path:
        return unit_record_path(self.run_dir, self.analysis, key)

    def matches(self, header: dict) -> bool:
        """Whether a saved header was written by this model with these settings and seed."""
        model = header.get("model")
        return (header.get("schema_version") in UNIT_SCHEMA_VERSIONS and header.get("analysis") == self.analysis
                and isinstance(model, dict) and model.get("fingerprint") == self.model["fingerprint"]
                and header.get("settings") == self.settings and header.get("seed") == self.seed)

    def load(self, key: str, needs: Sequence[str] = (), identity: str | None = None) -> Unit | None:
        """Unit `key` if it was finished under this header, from inputs of this `identity` (e.g. a
        task's digest), with the tensors named in `needs`, and passes its checks; else None."""
        unit, _ = self._read(key, needs, identity)
        if unit is not None:
            self.reused.append(key)
        return unit

    def get(self, key: str, compute: Callable[[], tuple[Record | dict, dict[str, Tensor] | None]],
            needs: Sequence[str] = (), identity: str | None = None) -> Unit:
        """Unit `key` reused when valid, else computed by `compute()` (result, tensors) under the
        unit's claim and saved. A unit another process is computing is waited for, not redone."""
        unit = self.load(key, needs, identity)
        if unit is not None:
            return unit
        with self.claim(key):
            unit, problem = self._read(key, needs, identity)
            if unit is not None:
                self.reused.append(key)
                return unit
            if problem:
                self.progress(f"[{self.analysis}] unit {key} {problem}: recomputing it")
            result, tensors = compute()
            unit = self._write(key, result, tensors, identity)
        self.computed.append(key)
        return unit

    def save(self, key: str, result: Record | dict, tensors: dict[str, Tensor] | None = None,
             identity: str | None = None) -> Unit:
        """Record unit `key` (computed from inputs of `identity`) as finished, under its claim."""
        with self.claim(key):
            unit = self._write(key, result, tensors, identity)
        self.computed.append(key)
        return unit

    def claim(self, key: str):
        """A context holding unit `key`'s claim (see `tv_lens.claims`), saying once if it waits."""
        path = self._record_path(key).with_suffix(".claim")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise ResultsError(f"cannot create {path.parent} ({err.strerror}): choose a writable --out") from None
        return claimed(path, lambda holder: self.progress(
            f"[{self.analysis}] unit {key} is being computed by {holder}: waiting for it"))

    def _write(self, key: str, result: Record | dict, tensors: dict[str, Tensor] | None, identity: str | None) -> Unit:
        """Tensor file first (named by its digest), then the record naming it; then older tensor files go."""
        path = self._record_path(key)
        reference, kept = None, None
        if tensors:
            data = tensor_bytes(tensors)
            digest = hashlib.sha256(data).hexdigest()
            kept = f"{path.stem}~{digest[:16]}.safetensors"
            reference = {"file": kept, "sha256": digest, "names": sorted(tensors)}
            write_atomically(path.parent / kept, data)
        record = {**self.header(), "key": key, "identity": identity, "tensors": reference,
                  "result": strict(encode(result))}
        record["digest"] = record_digest(record)
        write_json(path, record)
        for old in path.parent.glob(f"{path.stem}~*.safetensors"):
            if old.name != kept:
                old.unlink(missing_ok=True)
        return Unit(key, self._decoded(record["result"], key),
                    {name: t.detach().cpu() for name, t in (tensors or {}).items()}, self.analysis, record["digest"])

    def _read(self, key: str, needs: Sequence[str], identity: str | None) -> tuple[Unit | None, str | None]:
        """(the unit, None) when usable; (None, why) when present but not usable; (None, None) when absent."""
        path = self._record_path(key)
        try:
            raw = read_regular(path, JSON_LIMIT)
        except FileNotFoundError:
            return None, None
        except FileReadError as err:
            return None, f"could not be read ({err})"
        except OSError as err:
            return None, f"could not be read ({err.strerror})"
        try:
            record = parse_json(raw)
        except (ValueError, RecursionError):
            return None, "failed its check (not a strict UTF-8 JSON record: damaged)"
        if not isinstance(record, dict) or record.get("digest") != record_digest(record):
            return None, "failed its check (its digest does not match its contents: damaged or edited)"
        if record.get("key") != key:
            return None, f"holds unit {record.get('key')!r} under this file name"
        if not self.matches(record):
            return None, "was computed with other settings, seed, model or tv_lens version"
        if record.get("identity") != identity:
            return None, "was computed from inputs that have changed since"
        reference = record.get("tensors")
        names = reference.get("names", []) if isinstance(reference, dict) else []
        if not set(needs) <= set(names):
            return None, f"lacks the tensors {sorted(set(needs) - set(names))}"
        try:
            result = self._decoded(record.get("result"), key)
            tensors = self._read_tensors(path.parent, reference) if reference is not None else {}
        except ResultsError as err:
            return None, f"failed its check ({err})"
        return Unit(key, result, tensors, self.analysis, record["digest"]), None

    def _read_tensors(self, folder: Path, reference) -> dict[str, Tensor]:
        """The tensors of a record's reference, after checking the file against its SHA-256."""
        from safetensors import SafetensorError
        from safetensors.torch import load

        if not (isinstance(reference, dict) and isinstance(reference.get("file"), str)
                and "/" not in reference["file"] and isinstance(reference.get("sha256"), str)):
            raise ResultsError("its tensor reference is malformed")
        try:
            data = read_regular(folder / reference["file"], TENSORS_LIMIT)
        except FileReadError as err:
            raise ResultsError(f"its tensor file cannot be read: {err}") from None
        except OSError as err:
            raise ResultsError(f"its tensor file {reference['file']} cannot be read: {err.strerror}") from None
        if hashlib.sha256(data).hexdigest() != reference["sha256"]:
            raise ResultsError(f"its tensor file {reference['file']} does not match the digest in the record")
        try:
            tensors = load(data)
        except (SafetensorError, ValueError, RuntimeError) as err:
            raise ResultsError(f"its tensor file {reference['file']} is not safetensors ({err})") from None
        if sorted(tensors) != reference.get("names"):
            raise ResultsError(f"its tensor file {reference['file']} holds other tensors than the record names")
        return tensors

    def _decoded(self, result, key: str) -> Record | dict:
        """A unit's result read as its analysis's unit record (undefined numbers back to NaN)."""
        unit_type = getattr(ANALYSES.get(self.analysis), "UNIT", None) or dict
        return decode(unit_type, result, key, self.model["n_layers"])

    def write_results(self, sources: Sequence[Unit | Source], **body) -> Results:
        """Check and write the final results file of this analysis from the fields of its body and the
        units it was assembled from (`sources`: units of this store or another, e.g. the main table's);
        returns what was written (undefined numbers as NaN, like `load_results` reads it back)."""
        named = [s.source if isinstance(s, Unit) else s for s in sources]
        data = strict(encode({**self.header(), "sources": named, "digest": "", **body}))
        data["digest"] = record_digest(data)
        results = results_from_dict(data)
        write_json(self.results_path, data)
        return results


def unit_record_path(run_dir: str | Path, analysis: str, key: str) -> Path:
    """Where the record of unit `key` of `analysis` lives in `run_dir`."""
    return Path(run_dir) / analysis / UNITS / (unit_filename(key) + ".json")


def recorded_digest(run_dir: str | Path, analysis: str, key: str) -> str | None:
    """The digest of the record of unit `key` of `analysis` in `run_dir`, when it is there, readable and
    whole (its digest matches its contents); None otherwise."""
    try:
        record = parse_json(read_regular(unit_record_path(run_dir, analysis, key), JSON_LIMIT))
    except (OSError, FileReadError, ValueError, RecursionError):
        return None
    if not isinstance(record, dict) or record.get("digest") != record_digest(record) or record.get("key") != key:
        return None
    return record["digest"]


def load_results(path: str | Path) -> Results:
    """The results in a `results.json` path (or an analysis folder holding one), read back as the
    analysis's record and checked (its digest, its schema, the numbers that follow from others);
    numbers written as null (undefined, e.g. TV/ICL when ICL is 0) come back as NaN."""
    path = Path(path)
    if path.is_dir():
        path = path / RESULTS_FILE
    data = read_json(path)
    if "digest" in data and data["digest"] != record_digest(data):
        raise ResultsError(f"{path}: its digest does not match its contents (damaged or edited): rerun the "
                           f"analysis into its run directory to rewrite it")
    try:
        return results_from_dict(data)
    except ResultsError as err:
        raise ResultsError(f"{path}: {err}") from None
