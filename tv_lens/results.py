"""Results on disk: one folder per analysis in a run directory, a file per finished unit of work
(usually a task) written atomically, and a final versioned `results.json`.

A unit is reused only when its header (schema version, analysis, model fingerprint, settings, seed)
matches the current run, so an interrupted run resumes where it stopped and a changed setting
redoes the work.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from torch import Tensor

from tv_lens.files import save_tensors, write_atomically
from tv_lens.provenance import model_provenance, versions

SCHEMA_VERSION = 1
RESULTS_FILE = "results.json"


class ResultsError(ValueError):
    """A results file is missing, unreadable or does not follow its schema."""


def write_json(path: Path, data: dict) -> None:
    """Write `data` to `path` as JSON, atomically."""
    write_atomically(path, json.dumps(data, indent=1, allow_nan=True).encode())


def read_json(path: Path) -> dict:
    """The JSON object in `path`, or a one-line ResultsError."""
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ResultsError(f"{path} does not exist: run the analysis first") from None
    except (OSError, json.JSONDecodeError) as err:
        raise ResultsError(f"{path} is not a readable JSON file ({err}): delete it and rerun") from None
    if not isinstance(data, dict):
        raise ResultsError(f"{path} holds a {type(data).__name__}, not a results object")
    return data


def plain(data):
    """`data` as JSON gives it back (tuples become lists), so saved and current settings compare equal."""
    return json.loads(json.dumps(data))


def unit_filename(key: str) -> str:
    """A safe file stem for a unit key (task names may hold any character)."""
    if re.fullmatch(r"[A-Za-z0-9_.-]{1,80}", key) and not key.startswith("."):
        return key
    return re.sub(r"[^A-Za-z0-9_-]", "_", key)[:40] + "-" + hashlib.sha256(key.encode()).hexdigest()[:8]


@dataclass
class Store:
    """The folder `run_dir/analysis`: finished units under `units/` and the final results file."""

    run_dir: Path
    analysis: str
    model: dict
    settings: dict
    seed: int
    computed: list[str] = field(default_factory=list)
    reused: list[str] = field(default_factory=list)

    @classmethod
    def open(cls, run_dir: str | Path, analysis: str, model, settings: dict, seed: int) -> Store:
        return cls(Path(run_dir), analysis, model_provenance(model), plain(settings), seed)

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

    def _unit_path(self, key: str, suffix: str = ".json") -> Path:
        return self.folder / "units" / (unit_filename(key) + suffix)

    def matches(self, header: dict) -> bool:
        """Whether a saved header was written by this model with these settings and seed."""
        return (header.get("schema_version") == SCHEMA_VERSION and header.get("analysis") == self.analysis
                and header.get("model", {}).get("fingerprint") == self.model["fingerprint"]
                and header.get("settings") == self.settings and header.get("seed") == self.seed)

    def load(self, key: str, needs: Sequence[str] = (), identity: str | None = None) -> dict | None:
        """The saved result of unit `key` if it was finished under the same header, from inputs of
        the same `identity` (e.g. a task's digest), with the tensors named in `needs`; else None."""
        path = self._unit_path(key)
        if not path.exists():
            return None
        try:
            saved = read_json(path)
        except ResultsError:
            return None
        if not self.matches(saved) or saved.get("key") != key or saved.get("identity") != identity:
            return None
        has_tensor_file = self._unit_path(key, ".safetensors").exists()
        if not set(needs) <= (set(saved.get("tensors", ())) if has_tensor_file else set()):
            return None
        self.reused.append(key)
        return saved["result"]

    def save(self, key: str, result: dict, tensors: dict[str, Tensor] | None = None,
             identity: str | None = None) -> None:
        """Record unit `key` (computed from inputs of `identity`) as finished; tensors go to a
        safetensors file written before the JSON."""
        if tensors:
            save_tensors(self._unit_path(key, ".safetensors"), tensors)
        write_json(self._unit_path(key), {**self.header(), "key": key, "identity": identity,
                                          "tensors": sorted(tensors or {}), "result": plain(result)})
        self.computed.append(key)

    def load_tensors(self, key: str) -> dict[str, Tensor]:
        """The tensors saved with unit `key`."""
        from safetensors.torch import load_file

        path = self._unit_path(key, ".safetensors")
        if not path.exists():
            raise ResultsError(f"{path} is missing: delete {self._unit_path(key)} and rerun")
        return load_file(str(path))

    def write_results(self, body: dict) -> dict:
        """Validate and write the final results file of this analysis; returns what was written."""
        data = {**self.header(), **plain(body)}
        validate(data)
        write_json(self.results_path, data)
        return data


def load_results(path: str | Path) -> dict:
    """A validated results file (a `results.json` path, or an analysis folder holding one)."""
    path = Path(path)
    if path.is_dir():
        path = path / RESULTS_FILE
    data = read_json(path)
    try:
        validate(data)
    except ResultsError as err:
        raise ResultsError(f"{path}: {err}") from None
    return data


ACCURACY = {"correct": int, "total": int, "value": float, "ci_low": float, "ci_high": float}
ESTIMATE = {"value": float, "ci_low": float, "ci_high": float}
GROUP = {"n_tasks": int, "baseline": ESTIMATE, "icl": ESTIMATE, "tv": ESTIMATE, "tv_over_icl": ESTIMATE}
CLUSTER_STATS = {"n_vectors": int, "n_tasks": int, "within": float, "between": float,
                 "silhouette": float, "nearest_centroid_accuracy": float}
TOKENS = {"tokens": [str], "ids": [int], "scores": [float]}
HEADER = {"schema_version": int, "analysis": str, "settings": dict, "seed": int, "versions": dict,
          "model": {"model": str, "fingerprint": str, "n_layers": int, "d_model": int}}

SCHEMAS: dict[str, dict] = {
    "main_table": {
        "tasks": [{"task": str, "category": str, "baseline": ACCURACY, "icl": ACCURACY, "tv": ACCURACY,
                   "best_layer": int, "dev_accuracy_by_layer": [ACCURACY], "n_pairs_filtered": int,
                   "test_items": [{"query": str, "answers": [str], "icl": str, "tv": str}],
                   "hits": {"icl": [bool], "tv": [bool]}}],
        "summary": {"overall": GROUP, "categories": {str: GROUP}},
    },
    "layer_sweep": {
        "n_layers": int,
        "tasks": [{"task": str, "category": str, "best_layer": int, "accuracy": [float]}],
        "mean": [float], "std": [float], "min": [float], "max": [float],
    },
    "conflicting_tasks": {
        "pairs": [{"task_a": str, "task_b": str, "layer": int, "n_items": int,
                   "icl_vs_a": ACCURACY, "icl_vs_b": ACCURACY,
                   "patched_vs_a": ACCURACY, "patched_vs_b": ACCURACY,
                   "items": [{"query": str, "answers_a": [str], "answers_b": [str],
                              "icl": str, "patched": str}]}],
    },
    "top_tokens": {
        "k": int,
        "tasks": [{"task": str, "category": str, "layer": int, "n_items": int,
                   "raw": TOKENS, "centred": TOKENS}],
    },
    "clusters": {
        "layer": int,
        "stats": CLUSTER_STATS,
        "stats_centred": CLUSTER_STATS,
        "tasks": [{"task": str, "category": str, "n_items": int, "within": float}],
        "points": [{"task": str, "query": str, "x": float, "y": float}],
    },
}


def validate(data: dict) -> None:
    """Raise ResultsError (one line, with the path of the offending field) unless `data` follows
    the header schema and the schema of its analysis."""
    _check(data, HEADER, "")
    if data["schema_version"] > SCHEMA_VERSION:
        raise ResultsError(f"schema version {data['schema_version']} is newer than this tv_lens "
                           f"({SCHEMA_VERSION}): upgrade tv_lens")
    if data["analysis"] not in SCHEMAS:
        raise ResultsError(f"unknown analysis {data['analysis']!r}: expected one of {', '.join(SCHEMAS)}")
    _check(data, SCHEMAS[data["analysis"]], "")


def _check(value, spec, where: str) -> None:
    """`spec` is a type, a one-element list (every item follows it), or a dict of required keys
    (a dict with a single type key, like {str: X}, maps any key to X)."""
    if isinstance(spec, list):
        if not isinstance(value, list):
            raise ResultsError(f"{where or 'top level'}: expected a list, got {type(value).__name__}")
        for i, item in enumerate(value):
            _check(item, spec[0], f"{where}[{i}]")
    elif isinstance(spec, dict):
        if not isinstance(value, dict):
            raise ResultsError(f"{where or 'top level'}: expected an object, got {type(value).__name__}")
        if list(spec) == [str]:
            for key, item in value.items():
                _check(item, spec[str], f"{where}.{key}")
            return
        for key, item_spec in spec.items():
            if key not in value:
                raise ResultsError(f"{where or 'top level'}: missing field {key!r}")
            _check(value[key], item_spec, f"{where}.{key}" if where else key)
    elif spec is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ResultsError(f"{where}: expected a number, got {type(value).__name__}")
    elif spec is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ResultsError(f"{where}: expected an integer, got {type(value).__name__}")
    elif not isinstance(value, spec):
        raise ResultsError(f"{where}: expected {spec.__name__}, got {type(value).__name__}")
