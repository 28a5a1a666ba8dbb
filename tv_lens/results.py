"""Results on disk: one folder per analysis in a run directory, one self-verifying record per
finished unit of work (usually a task), and a final versioned `results.json`.

A unit is `units/<key>.json`, holding the run's header (schema version, analysis, model fingerprint,
settings, seed), the unit's result, the name and SHA-256 of its tensor file
(`units/<key>~<digest>.safetensors`, named by its own digest and written first) and the digest of
the record itself. The record's atomic rename is the one step that makes a unit finished, so a
process killed between the two writes leaves the previous unit whole. A unit is reused only when its
header matches the current run and both digests check out; otherwise it is recomputed, with one
line saying why when it was damaged. Several processes may work in one run directory: each unit is
computed under a claim (`tv_lens.claims`), so no unit is computed twice at once, and a `Shard`
chooses which units a process starts.
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
from tv_lens.files import tensor_bytes, write_atomically
from tv_lens.provenance import model_provenance, versions

SCHEMA_VERSION = 2
RESULTS_FILE = "results.json"
UNITS = "units"


class ResultsError(ValueError):
    """A results file is missing, unreadable or does not follow its schema."""


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
    """The JSON object in `path`, or a one-line ResultsError."""
    try:
        data = parse_json(Path(path).read_bytes())
    except FileNotFoundError:
        raise ResultsError(f"{path} does not exist: run the analysis first") from None
    except (OSError, ValueError, RecursionError) as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ResultsError(f"{path} is not a readable JSON file ({reason}): delete it and rerun") from None
    if not isinstance(data, dict):
        raise ResultsError(f"{path} holds a {type(data).__name__}, not a results object")
    return data


def write_json(path: Path, data: dict) -> None:
    """Write `data` to `path` as strict JSON, atomically; a one-line ResultsError if the folder is not writable."""
    try:
        write_atomically(path, to_json(data))
    except OSError as err:
        raise ResultsError(f"cannot write {path} ({err.strerror or err}): choose a writable --out") from None


def plain(data):
    """`data` as JSON gives it back (tuples become lists), so saved and current settings compare equal."""
    return json.loads(to_json(data))


def unit_filename(key: str) -> str:
    """A safe file stem for a unit key (task names may hold any character); never holds '~'."""
    if re.fullmatch(r"[A-Za-z0-9_.-]{1,80}", key) and not key.startswith("."):
        return key
    return re.sub(r"[^A-Za-z0-9_-]", "_", key)[:40] + "-" + hashlib.sha256(key.encode()).hexdigest()[:8]


def record_digest(record: dict) -> str:
    """SHA-256 of a unit record without its own `digest` field, in a canonical JSON form."""
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
            raise ValueError(f"a shard is I/N with 1 <= I <= N, got {self.index}/{self.count}")

    @classmethod
    def parse(cls, text: str) -> Shard:
        """'I/N' -> Shard(I, N)."""
        index, sep, count = text.partition("/")
        if not (sep and index.strip().isdigit() and count.strip().isdigit()):
            raise ValueError(f"--shard takes I/N (this process is shard I of N, 1 <= I <= N), got {text!r}")
        return cls(int(index), int(count))

    def share(self, names: Sequence[str]) -> list[str]:
        """This shard's names among `names`: every count-th of them in sorted order, kept in given order."""
        mine = set(sorted(set(names))[self.index - 1::self.count])
        return [n for n in names if n in mine]

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


@dataclass(frozen=True)
class Unit:
    """A finished unit of work: its result and its tensors, both checked against their digests."""

    key: str
    result: dict
    tensors: dict[str, Tensor] = field(default_factory=dict)


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
    def open(cls, run_dir: str | Path, analysis: str, model, settings: dict, seed: int,
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
        return self.folder / UNITS / (unit_filename(key) + ".json")

    def matches(self, header: dict) -> bool:
        """Whether a saved header was written by this model with these settings and seed."""
        model = header.get("model")
        return (header.get("schema_version") == SCHEMA_VERSION and header.get("analysis") == self.analysis
                and isinstance(model, dict) and model.get("fingerprint") == self.model["fingerprint"]
                and header.get("settings") == self.settings and header.get("seed") == self.seed)

    def load(self, key: str, needs: Sequence[str] = (), identity: str | None = None) -> Unit | None:
        """Unit `key` if it was finished under this header, from inputs of this `identity` (e.g. a
        task's digest), with the tensors named in `needs`, and passes its checks; else None."""
        unit, _ = self._read(key, needs, identity)
        if unit is not None:
            self.reused.append(key)
        return unit

    def get(self, key: str, compute: Callable[[], tuple[dict, dict[str, Tensor] | None]],
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

    def save(self, key: str, result: dict, tensors: dict[str, Tensor] | None = None,
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

    def _write(self, key: str, result: dict, tensors: dict[str, Tensor] | None, identity: str | None) -> Unit:
        """Tensor file first (named by its digest), then the record naming it; then older tensor files go."""
        path = self._record_path(key)
        reference, kept = None, None
        if tensors:
            data = tensor_bytes(tensors)
            digest = hashlib.sha256(data).hexdigest()
            kept = f"{path.stem}~{digest[:16]}.safetensors"
            reference = {"file": kept, "sha256": digest, "names": sorted(tensors)}
            try:
                write_atomically(path.parent / kept, data)
            except OSError as err:
                raise ResultsError(f"cannot write {path.parent / kept} ({err.strerror or err}): "
                                   f"choose a writable --out") from None
        record = {**self.header(), "key": key, "identity": identity, "tensors": reference, "result": strict(result)}
        record["digest"] = record_digest(record)
        write_json(path, record)
        for old in path.parent.glob(f"{path.stem}~*.safetensors"):
            if old.name != kept:
                old.unlink(missing_ok=True)
        return Unit(key, self._decoded(record["result"], key),
                    {name: t.detach().cpu() for name, t in (tensors or {}).items()})

    def _read(self, key: str, needs: Sequence[str], identity: str | None) -> tuple[Unit | None, str | None]:
        """(the unit, None) when usable; (None, why) when present but not usable; (None, None) when absent."""
        path = self._record_path(key)
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return None, None
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
        return Unit(key, result, tensors), None

    def _read_tensors(self, folder: Path, reference) -> dict[str, Tensor]:
        """The tensors of a record's reference, after checking the file against its SHA-256."""
        from safetensors import SafetensorError
        from safetensors.torch import load

        if not (isinstance(reference, dict) and isinstance(reference.get("file"), str)
                and "/" not in reference["file"] and isinstance(reference.get("sha256"), str)):
            raise ResultsError("its tensor reference is malformed")
        try:
            data = (folder / reference["file"]).read_bytes()
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

    def _decoded(self, result, key: str) -> dict:
        """A unit's result checked against its analysis's unit schema (undefined numbers back to NaN)."""
        spec = UNIT_SCHEMAS.get(self.analysis, dict)
        return _Checker(self.model["n_layers"]).check(result, spec, key)

    def write_results(self, body: dict) -> dict:
        """Validate and write the final results file of this analysis; returns what was written
        (undefined numbers as NaN, like the file read back with `load_results`)."""
        data = strict({**self.header(), **body})
        decoded = validate(data)
        write_json(self.results_path, data)
        return decoded


def load_results(path: str | Path) -> dict:
    """A validated results file (a `results.json` path, or an analysis folder holding one); numbers
    written as null (undefined, e.g. TV/ICL when ICL is 0) come back as NaN."""
    path = Path(path)
    if path.is_dir():
        path = path / RESULTS_FILE
    data = read_json(path)
    try:
        return validate(data)
    except ResultsError as err:
        raise ResultsError(f"{path}: {err}") from None


class Layer:
    """Schema type: a layer index of the results' model (0 <= layer < model.n_layers)."""


@dataclass(frozen=True)
class PerLayer:
    """Schema type: a list with one `item` per layer of the results' model."""

    item: object


class Fraction:
    """Schema type: a number in [0, 1], or null when undefined."""


ACCURACY = {"correct": int, "total": int, "value": Fraction, "ci_low": Fraction, "ci_high": Fraction}
ESTIMATE = {"value": float, "ci_low": float, "ci_high": float}
GROUP = {"n_tasks": int, "baseline": ESTIMATE, "icl": ESTIMATE, "tv": ESTIMATE, "tv_over_icl": ESTIMATE}
CLUSTER_STATS = {"n_vectors": int, "n_tasks": int, "within": float, "between": float,
                 "silhouette": float, "nearest_centroid_accuracy": float}
TOKENS = {"tokens": [str], "ids": [int], "scores": [float]}
HEADER = {"schema_version": int, "analysis": str, "settings": dict, "seed": int, "versions": dict,
          "model": {"model": str, "fingerprint": str, "n_layers": int, "d_model": int}}
MAIN_TASK = {"task": str, "category": str, "baseline": ACCURACY, "icl": ACCURACY, "tv": ACCURACY,
             "best_layer": Layer, "dev_accuracy_by_layer": PerLayer(ACCURACY), "n_pairs_filtered": int,
             "test_items": [{"query": str, "answers": [str], "icl": str, "tv": str}],
             "hits": {"icl": [bool], "tv": [bool]}}
FV_EVALUATION = {"zero_shot_by_layer": PerLayer(ACCURACY), "shuffled_by_layer": PerLayer(ACCURACY),
                 "zero_shot_layer": Layer, "shuffled_layer": Layer, "zero_shot": ACCURACY, "shuffled": ACCURACY}
HEAD_EFFECTS = {"aie": PerLayer([float]), "aie_low": PerLayer([float]), "aie_high": PerLayer([float])}
FV_RUN = {"format": str, "task": str, "category": str, "n_pairs": int, **HEAD_EFFECTS,
          "clean_accuracy": ACCURACY, "corrupted_accuracy": ACCURACY, "corrupted_prob": Fraction,
          "top_heads": [[float]], "baseline": ACCURACY, "icl": ACCURACY, "shuffled_icl": ACCURACY,
          "tv": {"layer": Layer, "dev_by_layer": PerLayer(Fraction), "test": ACCURACY, "shuffled": ACCURACY},
          "heads_patched": {"zero_shot": ACCURACY, "shuffled": ACCURACY}, "fv": {str: FV_EVALUATION},
          "cosine": {str: PerLayer(float)}, "top_tokens": {str: TOKENS}}
CONFLICT_PAIR = {"task_a": str, "task_b": str, "layer": Layer, "n_items": int,
                 "icl_vs_a": ACCURACY, "icl_vs_b": ACCURACY, "patched_vs_a": ACCURACY, "patched_vs_b": ACCURACY,
                 "items": [{"query": str, "answers_a": [str], "answers_b": [str], "icl": str, "patched": str}]}

SCHEMAS: dict[str, dict] = {
    "main_table": {"tasks": [MAIN_TASK], "summary": {"overall": GROUP, "categories": {str: GROUP}}},
    "layer_sweep": {
        "n_layers": int,
        "tasks": [{"task": str, "category": str, "best_layer": Layer, "accuracy": PerLayer(Fraction)}],
        "mean": PerLayer(float), "std": PerLayer(float), "min": PerLayer(float), "max": PerLayer(float),
    },
    "conflicting_tasks": {"pairs": [CONFLICT_PAIR]},
    "top_tokens": {
        "k": int,
        "tasks": [{"task": str, "category": str, "layer": Layer, "n_items": int, "raw": TOKENS, "centred": TOKENS}],
    },
    "clusters": {
        "layer": Layer,
        "stats": CLUSTER_STATS,
        "stats_centred": CLUSTER_STATS,
        "tasks": [{"task": str, "category": str, "n_items": int, "within": float}],
        "points": [{"task": str, "query": str, "x": float, "y": float}],
    },
    "function_vectors": {"k": int, "formats": [str], "formulations": [str], "runs": [FV_RUN],
                         "mean_aie": {str: {"n_tasks": int, **HEAD_EFFECTS}}},
}
UNIT_SCHEMAS: dict[str, object] = {"main_table": MAIN_TASK, "conflicting_tasks": CONFLICT_PAIR,
                                   "clusters": {"queries": [str]}, "function_vectors": FV_RUN}


def validate(data: dict) -> dict:
    """`data` checked against the header schema and the schema of its analysis, with undefined
    numbers (null) as NaN; a one-line ResultsError naming the offending field if it does not follow
    them or is inconsistent (correct > total, a layer the model lacks, a curve of the wrong length)."""
    if not isinstance(data, dict):
        raise ResultsError(f"top level: expected an object, got {type(data).__name__}")
    _Checker(None).check(data, HEADER, "")
    if data["schema_version"] > SCHEMA_VERSION:
        raise ResultsError(f"schema version {data['schema_version']} is newer than this tv_lens "
                           f"({SCHEMA_VERSION}): upgrade tv_lens")
    if data["analysis"] not in SCHEMAS:
        raise ResultsError(f"unknown analysis {data['analysis']!r}: expected one of {', '.join(SCHEMAS)}")
    n_layers = data["model"]["n_layers"]
    if n_layers < 1:
        raise ResultsError(f"model.n_layers: expected a positive number of layers, got {n_layers}")
    if data.get("n_layers", n_layers) != n_layers:
        raise ResultsError(f"n_layers: {data['n_layers']} differs from the model's {n_layers}")
    return {**data, **_Checker(n_layers).check(data, SCHEMAS[data["analysis"]], "")}


@dataclass(frozen=True)
class _Checker:
    """Checks a value against a spec and returns it with undefined numbers (null) as NaN. A spec is
    a type, a schema type above, a one-element list (every item follows it), or a dict of required
    keys (a dict with a single `str` key, like {str: X}, maps any key to X)."""

    n_layers: int | None

    def check(self, value, spec, where: str):
        if isinstance(spec, list):
            return [self.check(item, spec[0], f"{where}[{i}]") for i, item in enumerate(self._list(value, where))]
        if isinstance(spec, PerLayer):
            items = self._list(value, where)
            if len(items) != self.n_layers:
                raise ResultsError(f"{where}: expected one entry per layer ({self.n_layers}), got {len(items)}")
            return self.check(items, [spec.item], where)
        if isinstance(spec, dict):
            return self._object(value, spec, where)
        if spec in (float, Fraction):
            return self._number(value, where, spec is Fraction)
        if spec in (int, Layer):
            if isinstance(value, bool) or not isinstance(value, int):
                raise ResultsError(f"{where}: expected an integer, got {type(value).__name__}")
            if spec is Layer and not 0 <= value < self.n_layers:
                raise ResultsError(f"{where}: layer {value} out of range: the model has layers 0..{self.n_layers - 1}")
            return value
        if not isinstance(value, spec):
            raise ResultsError(f"{where or 'top level'}: expected {spec.__name__}, got {type(value).__name__}")
        return value

    @staticmethod
    def _list(value, where: str) -> list:
        if not isinstance(value, list):
            raise ResultsError(f"{where or 'top level'}: expected a list, got {type(value).__name__}")
        return value

    def _object(self, value, spec: dict, where: str) -> dict:
        if not isinstance(value, dict):
            raise ResultsError(f"{where or 'top level'}: expected an object, got {type(value).__name__}")
        if list(spec) == [str]:
            return {key: self.check(item, spec[str], f"{where}.{key}") for key, item in value.items()}
        checked = dict(value)
        for key, item_spec in spec.items():
            if key not in value:
                raise ResultsError(f"{where or 'top level'}: missing field {key!r}")
            checked[key] = self.check(value[key], item_spec, f"{where}.{key}" if where else key)
        if spec is ACCURACY and not 0 <= checked["correct"] <= checked["total"]:
            raise ResultsError(f"{where}: {checked['correct']} correct out of {checked['total']} is impossible")
        return checked

    @staticmethod
    def _number(value, where: str, fraction: bool) -> float:
        if value is None:
            return math.nan
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ResultsError(f"{where}: expected a number, got {type(value).__name__}")
        if fraction and not 0 <= value <= 1:
            raise ResultsError(f"{where}: expected a fraction in [0, 1], got {value}")
        return value
