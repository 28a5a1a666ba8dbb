"""`TaskVector`: θ at every layer, with the provenance needed to trust and reuse it.

A saved vector is one self-contained safetensors file: the tensor `vectors` [n_layers, d_model]
and, in the safetensors string-metadata header under the key `tv_lens`, a JSON object with every
other field (model, fingerprint, hook, layer, prompt format, shots, contexts, seed, task,
versions, schema version).
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from pathlib import Path

from jaxtyping import Float
from torch import Tensor

from tv_lens.files import save_tensors
from tv_lens.interventions import RESID_POST, Intervention, Mode, Positions, intervening
from tv_lens.models import fingerprint

SCHEMA_VERSION = 1
METADATA_KEY = "tv_lens"
TENSOR_KEY = "vectors"
TASK_VECTOR = "task_vector"
FUNCTION_VECTOR = "function_vector"
KINDS = (TASK_VECTOR, FUNCTION_VECTOR)


class VectorFileError(ValueError):
    """A task-vector file is missing, damaged, foreign or too new; the message says what to do."""


@dataclass
class TaskVector:
    """θ = A(S): the residual stream at the last token of `[demos, dummy query]`, for every layer.

    `vectors[L]` is θ read at `hook.format(layer=L)`; `layer` is the layer `apply` uses by default
    (chosen by a layer sweep, or given by the user). `n_contexts` is how many demonstration sets
    were averaged (1 per item in the paper; K for a task-level vector); `dev_accuracy` is the dev
    accuracy per layer when the layer was chosen by a sweep. `kind` is "task_vector" (θ, written
    over the residual stream) or "function_vector" (Todd et al.: added to it; `vectors[L]` is what is
    added at layer L), whose `heads` lists the [layer, head, AIE] of the heads summed.
    """

    vectors: Float[Tensor, "n_layers d_model"]
    layer: int | None = None
    model: str = ""
    fingerprint: str = ""
    hook: str = RESID_POST
    prompt_format: dict = field(default_factory=dict)
    n_shots: int = 0
    n_contexts: int = 1
    seed: int | None = None
    task: str | None = None
    versions: dict = field(default_factory=dict)
    dev_accuracy: list[float] = field(default_factory=list)
    kind: str = TASK_VECTOR
    heads: list[list] = field(default_factory=list)
    schema_version: int = SCHEMA_VERSION

    @property
    def n_layers(self) -> int:
        return self.vectors.shape[0]

    @property
    def d_model(self) -> int:
        return self.vectors.shape[1]

    def at(self, layer: int | None = None) -> Float[Tensor, " d_model"]:
        """θ at `layer` (default: the vector's own layer)."""
        layer = self.layer if layer is None else layer
        if layer is None:
            raise ValueError("this task vector has no default layer: pass layer=L")
        if not 0 <= layer < self.n_layers:
            raise ValueError(f"layer {layer} out of range: this vector has layers 0..{self.n_layers - 1}")
        return self.vectors[layer]

    def intervention(self, layer: int | None = None, mode: Mode = "replace", strength: float = 1.0,
                     positions: Positions = "last") -> Intervention:
        """θ at `layer` (default: the vector's own) as an edit of its hook: the paper's is
        replace at the last token; `mode="add"` adds `strength` x θ (steering)."""
        layer = self.layer if layer is None else layer
        return Intervention(layer=layer, value=self.at(layer), hook=self.hook, positions=positions, mode=mode,
                            strength=strength)

    @contextmanager
    def applied(self, model, layer: int | None = None, mode: Mode = "replace", strength: float = 1.0,
                positions: Positions = "last", allow_transfer: bool = False) -> Iterator[Intervention]:
        """Within the block, every forward pass of `model` runs with θ written in (see `intervention`),
        so tv_lens vectors mix with your own TransformerLens code."""
        check_compatible(model, self, allow_transfer)
        edit = self.intervention(layer, mode, strength, positions)
        with intervening(model, [edit]):
            yield edit

    def metadata(self) -> dict:
        """Every field except the tensor (copies of JSON-ready values)."""
        return {f.name: copy.deepcopy(getattr(self, f.name)) for f in fields(self) if f.name != TENSOR_KEY}

    def summary(self) -> str:
        """One line saying what this vector is."""
        return (f"{self.kind.replace('_', ' ')} of task {self.task or '?'} on {self.model or '?'} "
                f"(weights {self.fingerprint or '?'}), "
                f"layer {self.layer}, {self.n_contexts} context(s) of {self.n_shots} shots, "
                f"{self.n_layers}x{self.d_model}")

    def save(self, path: str | os.PathLike) -> Path:
        """Write the vector and its metadata to one safetensors file (atomically) and return its path."""
        metadata = {"format": "pt", METADATA_KEY: json.dumps(self.metadata())}
        return save_tensors(path, {TENSOR_KEY: self.vectors}, metadata)

    @classmethod
    def load(cls, path: str | os.PathLike) -> TaskVector:
        """Read a file written by `save`; a missing, damaged, foreign or too-new file is a `VectorFileError`."""
        path = Path(path)
        if not path.is_file():
            raise VectorFileError(f"no task vector file at {path}: check the path, or make one with "
                                  f"`tv-lens learn` or TaskVector.save")
        header, tensors = _read_safetensors(path)
        if METADATA_KEY not in header:
            raise VectorFileError(f"{path} is a safetensors file without tv_lens metadata: it is not a "
                                  f"task vector saved by tv_lens")
        try:
            meta = json.loads(header[METADATA_KEY])
        except json.JSONDecodeError:
            raise VectorFileError(f"{path} has damaged tv_lens metadata (not JSON): re-save the vector") from None
        return cls._from_parts(path, meta, tensors.get(TENSOR_KEY))

    @classmethod
    def _from_parts(cls, path: Path, meta, tensor) -> TaskVector:
        if not isinstance(meta, dict):
            raise VectorFileError(f"{path} has damaged tv_lens metadata (not an object): re-save the vector")
        version = meta.get("schema_version")
        if not isinstance(version, int):
            raise VectorFileError(f"{path} has no schema version in its tv_lens metadata: re-save the vector")
        if version > SCHEMA_VERSION:
            raise VectorFileError(f"{path} has schema version {version}, newer than this tv_lens reads "
                                  f"({SCHEMA_VERSION}): upgrade tv_lens")
        if tensor is None or tensor.ndim != 2:
            raise VectorFileError(f"{path} holds no [n_layers, d_model] tensor named {TENSOR_KEY!r}: "
                                  f"re-save the vector")
        layer = meta.get("layer")
        if layer is not None and not (isinstance(layer, int) and 0 <= layer < tensor.shape[0]):
            raise VectorFileError(f"{path} names layer {layer!r}, outside its {tensor.shape[0]} layers: "
                                  f"the file was altered; re-save the vector")
        if meta.get("kind", TASK_VECTOR) not in KINDS:
            raise VectorFileError(f"{path} is of kind {meta['kind']!r}, not one of {', '.join(KINDS)}: the file "
                                  f"was altered or written by a newer tv_lens")
        known = {f.name for f in fields(cls)} - {TENSOR_KEY}
        unknown = sorted(set(meta) - known)
        if unknown:
            raise VectorFileError(f"{path} has unknown metadata fields {unknown} for schema version "
                                  f"{version}: the file was altered or written by another tool")
        return cls(vectors=tensor, **meta)


def check_compatible(model, theta: TaskVector, allow_transfer: bool = False) -> None:
    """Refuse a vector learned on another model (another d_model always; another fingerprint
    unless `allow_transfer`)."""
    if theta.d_model != model.cfg.d_model:
        raise ValueError(
            f"task vector has d_model {theta.d_model} but the model has {model.cfg.d_model}: "
            f"it was learned on {theta.model or 'another model'}; load that model"
        )
    if theta.fingerprint and theta.fingerprint != fingerprint(model) and not allow_transfer:
        raise ValueError(
            f"task vector was learned on {theta.model} (weights {theta.fingerprint}), not on this "
            f"model ({fingerprint(model)}): load that model, or pass allow_transfer=True (--force on the command line)"
        )


def _read_safetensors(path: Path) -> tuple[dict, dict[str, Tensor]]:
    """The string-metadata header and the tensors of a safetensors file, or a one-line error."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            header = f.metadata() or {}
            tensors = {name: f.get_tensor(name) for name in f.keys()}
    except (SafetensorError, OSError, RuntimeError, ValueError) as err:
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise VectorFileError(f"{path} is not a readable task vector file (damaged, truncated or not "
                              f"safetensors: {reason}); re-create it with `tv-lens learn`") from None
    return header, tensors
