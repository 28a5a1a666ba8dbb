"""`TaskVector`: θ at every layer, with the provenance needed to trust and reuse it.

A saved vector is one self-contained safetensors file: the tensor `vectors` [n_layers, d_model]
and, in the safetensors string-metadata header under the key `tv_lens`, a JSON object with every
other field (model, fingerprint, hook, layer, prompt format, shots, contexts, seed, task,
versions, schema version; for a composed vector, its recipe). Vectors of one model, kind and shape
add, subtract, scale and average (`tv_lens.task_vectors.algebra`).
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import os
import re
import struct
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import ClassVar

import torch
from jaxtyping import Float
from torch import Tensor

from tv_lens.errors import TvLensError, TvLensTypeError
from tv_lens.files import FileReadError, read_regular, save_tensors
from tv_lens.models.bridge import Model
from tv_lens.models.provenance import fingerprint, versions
from tv_lens.patching.interventions import RESID_POST, Intervention, Mode, Positions, intervening
from tv_lens.task_vectors import algebra

SCHEMA_VERSION = 2  # 2: `recipe` of composed vectors
METADATA_KEY = "tv_lens"
TENSOR_KEY = "vectors"
TASK_VECTOR = "task_vector"
FUNCTION_VECTOR = "function_vector"
KINDS = (TASK_VECTOR, FUNCTION_VECTOR)
VECTOR_LIMIT = 256 << 20
"""The largest vector file read (bytes): a [n_layers, d_model] float32 tensor of the largest models is ~8 MB."""
VECTOR_HOOK = re.compile(r"blocks\.\{layer\}\.hook_(resid_pre|resid_mid|resid_post|attn_out|mlp_out)")


class VectorFileError(TvLensError):
    """A task-vector file is missing, damaged, foreign or too new; the message says what to do."""


@dataclass
class TaskVector:
    """A task vector θ = A(S): the residual stream at the last token of `[demos, dummy query]`, at every layer.

    Made by `learn` and `learn_task` (or from a tensor of your own), saved to one safetensors file with its
    provenance, and written into a model by `apply`, `generate`, `TaskVectorSolver` or `applied`. A
    `FunctionVector` is the other kind, added where θ replaces. Vectors of one model, kind, hook, shape and
    prompt format add, subtract, negate, scale by a number and average (`a + b - c`, `2 * a`,
    `TaskVector.mean([a, b])`): the result has a `recipe` and keeps the settings its components share.

    Attributes:
        vectors: [n_layers, d_model] float tensor; row L is θ read at `hook.format(layer=L)`.
        layer: the layer `apply` writes θ at by default (chosen by a layer sweep, or given); None for none.
        model: the spec of the model it was learned on.
        fingerprint: that model's weights fingerprint (`fingerprint`), checked when it is applied.
        hook: the hook template θ is read at and written to (`blocks.{layer}.hook_resid_post`).
        prompt_format: the fields of the `PromptFormat` it was learned with (queries are written in it).
        n_shots: demonstrations per context.
        n_contexts: how many demonstration contexts were averaged (1 per item in the paper; k for `learn_task`).
        seed: the seed it was sampled with, if any.
        task: the task's name, if known.
        versions: the versions of tv-lens, transformer-lens, transformers and torch it was made with.
        dev_accuracy: the dev accuracy at each layer when the layer was chosen by a sweep; else empty.
        kind: "task_vector" (or "function_vector" for a `FunctionVector`).
        heads: for a function vector, the [layer, head, AIE] of the heads summed; else empty.
        recipe: for a vector made by vector algebra, its expression (`tv:a + tv:b - tv:c`) and each
            component's identity (`tv_lens.task_vectors.algebra`); else None.
        schema_version: the file format's version.
        default_mode: how the vector is written when no mode is given: "replace" (θ replaces the residual
            stream, the paper's patch).

    Raises:
        TvLensError: `vectors` is not a non-empty 2-D float tensor; `layer` is out of range; `kind` does not
            match the class.

    Example:
        ```python
        with theta.applied(model, layer=9):  # any forward pass of yours, with θ written in
            logits = model(model.to_tokens("example:hot->"))
        ```
    """

    default_mode: ClassVar[Mode] = "replace"

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
    recipe: dict | None = None
    schema_version: int = SCHEMA_VERSION

    def __post_init__(self) -> None:
        vectors = self.vectors
        if not isinstance(vectors, Tensor) or vectors.ndim != 2 or 0 in vectors.shape \
                or not vectors.dtype.is_floating_point:
            got = (f"a {str(vectors.dtype).removeprefix('torch.')} tensor of shape {list(vectors.shape)}"
                   if isinstance(vectors, Tensor) else f"a {type(vectors).__name__}")
            raise TvLensError(f"a TaskVector's vectors must be a float tensor [n_layers, d_model] (one row per layer), "
                              f"got {got}: for one layer's vector use Intervention(layer=L, value=v)")
        if self.layer is not None and (not _is_int(self.layer) or not 0 <= self.layer < vectors.shape[0]):
            raise TvLensError(f"layer {self.layer!r} is not one of this vector's layers 0..{vectors.shape[0] - 1}")
        kind = FUNCTION_VECTOR if isinstance(self, FunctionVector) else TASK_VECTOR
        if self.kind != kind:
            raise TvLensError(f"a {type(self).__name__} has kind {kind!r}, not {self.kind!r}: build a "
                              f"{'FunctionVector' if self.kind == FUNCTION_VECTOR else 'TaskVector'} instead")

    @property
    def n_layers(self) -> int:
        """The number of layers (rows of `vectors`)."""
        return self.vectors.shape[0]

    @property
    def d_model(self) -> int:
        """The width of the residual stream (columns of `vectors`)."""
        return self.vectors.shape[1]

    def digest(self) -> str:
        """The vector's identity in a recipe: 16 hex digits of SHA-256 over the tensor's float32 values.

        Returns:
            The digest.
        """
        data = self.vectors.detach().to("cpu", torch.float32).contiguous().numpy().tobytes()
        return hashlib.sha256(data).hexdigest()[:16]

    def __add__(self, other: TaskVector) -> TaskVector:
        if not isinstance(other, TaskVector):
            return NotImplemented
        return _combined([(1, self), (1, other)])

    def __sub__(self, other: TaskVector) -> TaskVector:
        if not isinstance(other, TaskVector):
            return NotImplemented
        return _combined([(1, self), (-1, other)])

    def __mul__(self, factor: float) -> TaskVector:
        if isinstance(factor, TaskVector):
            return NotImplemented
        return _combined([(factor, self)])

    __rmul__ = __mul__

    def __neg__(self) -> TaskVector:
        return _combined([(-1, self)])

    @classmethod
    def mean(cls, vectors: Sequence[TaskVector]) -> TaskVector:
        """The mean of several vectors, with its recipe (`mean(tv:a, tv:b)`).

        Args:
            vectors: vectors of one model, kind, hook, shape and prompt format.

        Returns:
            A vector of the first one's class.

        Raises:
            TvLensTypeError: an empty list, or an item that is not a `TaskVector`.
            TvLensError: vectors that cannot be combined (another model, kind, hook, shape or prompt format).
        """
        vectors = list(vectors)
        if not vectors or not all(isinstance(v, TaskVector) for v in vectors):
            raise TvLensTypeError("TaskVector.mean takes a non-empty list of TaskVectors")
        return _combined([(1 / len(vectors), v) for v in vectors])

    def at(self, layer: int | None = None) -> Float[Tensor, " d_model"]:
        """θ at one layer.

        Args:
            layer: the layer; default the vector's own `layer`.

        Returns:
            The [d_model] row of `vectors`.

        Raises:
            TvLensError: no `layer` where the vector has none, or a layer out of range.
        """
        return self.vectors[self._chosen_layer(layer)]

    def _chosen_layer(self, layer: int | None) -> int:
        """`layer`, else the vector's own; refused where there is none or it is out of range."""
        layer = self.layer if layer is None else layer
        if layer is None:
            raise TvLensError("this task vector has no default layer: pass layer=L")
        if not 0 <= layer < self.n_layers:
            raise TvLensError(f"layer {layer} out of range: this vector has layers 0..{self.n_layers - 1}")
        return layer

    def intervention(self, layer: int | None = None, *, mode: Mode | None = None, strength: float = 1.0,
                     positions: Positions = "last") -> Intervention:
        """The vector at one layer as an `Intervention` on its hook, for `intervening` or `apply`.

        Args:
            layer: the layer; default the vector's own `layer`.
            mode: "replace" (write the vector), "add" (add `strength` x the vector: steering) or "scale"
                (multiply the activation by `strength`); default `default_mode`.
            strength: the multiple of the vector for "add", the factor for "scale".
            positions: "last" (the last token), "all" (every token after a leading BOS), or a tuple of token
                indices (negative ones from the end).

        Returns:
            The intervention.

        Raises:
            TvLensError: no `layer` where the vector has none, or a layer out of range; a bad mode, strength
                or positions.
        """
        layer = self._chosen_layer(layer)
        return Intervention(layer=layer, value=self.at(layer), hook=self.hook, positions=positions,
                            mode=mode or self.default_mode, strength=strength)

    @contextmanager
    def applied(self, model: Model, layer: int | None = None, *, mode: Mode | None = None, strength: float = 1.0,
                positions: Positions = "last", allow_transfer: bool = False) -> Iterator[Intervention]:
        """Within the `with` block, every forward pass of `model` in this thread runs with this vector written in.

        So tv_lens vectors mix with your own TransformerLens code (`model(tokens)`, `run_with_cache`, ...).
        The vector is placed as `intervention` places it and written as `intervening` writes it.

        Args:
            model: the model; it must be the one the vector was learned on (weights fingerprint and depth).
            layer: the layer; default the vector's own `layer`.
            mode: "replace", "add" or "scale"; default `default_mode`.
            strength: the multiple of the vector for "add", the factor for "scale".
            positions: "last", "all" or a tuple of token indices (as in `intervention`).
            allow_transfer: accept a model of the same `d_model` but another depth or fingerprint.

        Yields:
            The intervention written in.

        Raises:
            TvLensError: a vector learned on another model; no `layer` where the vector has none; a layer out
                of range.
        """
        check_compatible(model, self, allow_transfer)
        edit = self.intervention(layer, mode=mode, strength=strength, positions=positions)
        with intervening(model, [edit]):
            yield edit

    def metadata(self) -> dict:
        """Every field except the tensor, as saved in the file's metadata.

        Returns:
            Field name to a copy of its JSON-ready value.
        """
        return {f.name: copy.deepcopy(getattr(self, f.name)) for f in fields(self) if f.name != TENSOR_KEY}

    def summary(self) -> str:
        """One line saying what this vector is: kind, task or recipe, model, layer, contexts, shape.

        Returns:
            The line.
        """
        what = f"= {self.recipe['expression']}" if self.recipe else f"of task {self.task or '?'}"
        return (f"{self.kind.replace('_', ' ')} {what} on {self.model or '?'} "
                f"(weights {self.fingerprint or '?'}), "
                f"layer {self.layer}, {self.n_contexts} context(s) of {self.n_shots} shots, "
                f"{self.n_layers}x{self.d_model}")

    def save(self, path: str | os.PathLike) -> Path:
        """Write the vector and its metadata to one safetensors file, atomically (replacing any file there).

        The tensor is stored as `vectors` and every other field as JSON in the string metadata under the key
        `tv_lens`, so the file is self-contained.

        Args:
            path: the file to write (conventionally `.safetensors`).

        Returns:
            The path written.
        """
        metadata = {"format": "pt", METADATA_KEY: json.dumps(self.metadata())}
        return save_tensors(path, {TENSOR_KEY: self.vectors}, metadata)

    @classmethod
    def load(cls, path: str | os.PathLike) -> TaskVector:
        """Read a vector written by `save`.

        Args:
            path: the file.

        Returns:
            The vector: a `FunctionVector` where the file holds one, else a `TaskVector`.

        Raises:
            VectorFileError: a missing, damaged, foreign or too-new file, or metadata of the wrong type or range.
        """
        path = Path(path)
        try:
            data = read_regular(path, VECTOR_LIMIT, follow=True)
        except (FileNotFoundError, IsADirectoryError):
            raise VectorFileError(f"no task vector file at {path}: check the path, or make one with "
                                  f"`tv-lens learn` or TaskVector.save") from None
        except FileReadError as err:
            raise VectorFileError(f"{err}: give the path of a task vector file") from None
        except OSError as err:
            raise VectorFileError(f"cannot read {path} ({err.strerror or err})") from None
        header, tensors = _read_safetensors(path, data)
        if METADATA_KEY not in header:
            raise VectorFileError(f"{path} is a safetensors file without tv_lens metadata: it is not a "
                                  f"task vector saved by tv_lens")
        try:
            meta = json.loads(header[METADATA_KEY])
        except (ValueError, RecursionError):
            raise VectorFileError(f"{path} has damaged tv_lens metadata (not JSON): re-save the vector") from None
        return cls._from_parts(path, meta, tensors.get(TENSOR_KEY))

    @classmethod
    def _from_parts(cls, path: Path, meta, tensor) -> TaskVector:
        if not isinstance(meta, dict):
            raise VectorFileError(f"{path} has damaged tv_lens metadata (not an object): re-save the vector")
        version = meta.get("schema_version")
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise VectorFileError(f"{path} has no valid schema version in its tv_lens metadata: re-save the vector")
        if version > SCHEMA_VERSION:
            raise VectorFileError(f"{path} has schema version {version}, newer than this tv_lens reads "
                                  f"({SCHEMA_VERSION}): upgrade tv_lens")
        known = {f.name for f in fields(cls)} - {TENSOR_KEY}
        unknown = sorted(set(meta) - known)
        if unknown:
            raise VectorFileError(f"{path} has unknown metadata fields {unknown} for schema version "
                                  f"{version}: the file was altered or written by another tool")
        _check_tensor(path, tensor)
        for name, value in meta.items():
            problem = _field_problem(name, value, tensor.shape[0])
            if problem:
                raise VectorFileError(f"{path}: metadata field {name!r} {problem}: the file was altered or "
                                      f"damaged; re-create the vector with `tv-lens learn`")
        return (FunctionVector if meta.get("kind") == FUNCTION_VECTOR else TaskVector)(vectors=tensor, **meta)


@dataclass
class FunctionVector(TaskVector):
    """A function vector (Todd et al. 2024): the summed mean outputs of the attention heads that carry a task.

    Made by `function_vector`. It is a `TaskVector` (same fields, file format, methods and algebra) that is
    added to the residual stream, not written over it (`default_mode` "add"): `vectors[L]` is what is added
    at layer L.

    Attributes:
        default_mode: "add": the vector is added to the residual stream.
        kind: "function_vector".
        heads: the [layer, head, AIE] of the heads summed, largest AIE first.
    """

    default_mode: ClassVar[Mode] = "add"
    kind: str = FUNCTION_VECTOR


def _combined(parts: Sequence[tuple[float, TaskVector]]) -> TaskVector:
    """Σ cᵢ·vᵢ as a vector of the first one's class, with its recipe and the settings its components share."""
    vectors, recipe, shared = algebra.combination(parts)
    return replace(parts[0][1], vectors=vectors, task=None, versions=versions(), dev_accuracy=[], heads=[],
                   recipe=recipe, schema_version=SCHEMA_VERSION, **shared)


def model_to_load(theta: TaskVector, source: str | os.PathLike) -> str:
    """The model `theta` (read from `source`) names, when tv_lens may load it without being told: an embedded
    or tiny model. A hub id or a path inside a file is loaded only when the user names it (it would fetch
    from the hub, or read any folder, on the file's word); a one-line error says how."""
    from tv_lens.models.loading import EMBEDDED
    from tv_lens.models.tiny import TINY_MODELS

    if not theta.model:
        raise TvLensError(f"{source} does not name its model: pass the model (--model, or model=load_model(...))")
    if theta.model not in EMBEDDED and theta.model not in TINY_MODELS:
        raise TvLensError(f"{source} was learned on {theta.model!r}, which is not an embedded model: tv_lens loads "
                          f"it only when you name it (--model, or model=load_model(...))")
    return theta.model


def check_compatible(model: Model, theta: TaskVector, allow_transfer: bool = False) -> None:
    """Refuse a vector learned on another model (another d_model always; another depth or
    fingerprint unless `allow_transfer`)."""
    if theta.d_model != model.cfg.d_model:
        raise TvLensError(
            f"task vector has d_model {theta.d_model} but the model has {model.cfg.d_model}: "
            f"it was learned on {theta.model or 'another model'}; load that model"
        )
    if theta.n_layers != model.cfg.n_layers and not allow_transfer:
        raise TvLensError(f"task vector has {theta.n_layers} layers but the model has {model.cfg.n_layers}: "
                          f"it was learned on {theta.model or 'another model'}; load that model, or pass "
                          f"allow_transfer=True (--force on the command line)")
    if theta.fingerprint and theta.fingerprint != fingerprint(model) and not allow_transfer:
        raise TvLensError(
            f"task vector was learned on {theta.model} (weights {theta.fingerprint}), not on this "
            f"model ({fingerprint(model)}): load that model, or pass allow_transfer=True (--force on the command line)"
        )


def _check_tensor(path: Path, tensor) -> None:
    """Refuse a missing, non-float, misshapen or non-finite `vectors` tensor, in one line."""
    if tensor is None or tensor.ndim != 2 or 0 in tensor.shape:
        shape = "none" if tensor is None else list(tensor.shape)
        raise VectorFileError(f"{path} holds no [n_layers, d_model] tensor named {TENSOR_KEY!r} (found {shape}): "
                              f"re-save the vector")
    if not tensor.dtype.is_floating_point:
        raise VectorFileError(f"{path} holds a tensor of dtype {str(tensor.dtype).removeprefix('torch.')}, not "
                              f"floating point: the file was altered or written by another tool")
    if not tensor.isfinite().all():
        raise VectorFileError(f"{path} holds NaN or infinite values: the vector is damaged (or was learned from "
                              f"a run that overflowed); re-create it with `tv-lens learn`")


def _shown(value) -> str:
    """`value` for an error line: its repr, cut to 60 characters."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _field_problem(name: str, value, n_layers: int) -> str | None:
    """Why metadata field `name` cannot hold `value` for a vector of `n_layers` layers, or None."""
    if name == "layer":
        ok = value is None or (_is_int(value) and 0 <= value < n_layers)
        return None if ok else f"is {_shown(value)}, not a layer of its {n_layers} (or null)"
    if name in ("model", "fingerprint"):
        return None if isinstance(value, str) else f"is {_shown(value)}, not a string"
    if name in ("task",):
        return None if value is None or isinstance(value, str) else f"is {_shown(value)}, not a string or null"
    if name == "seed":
        return None if value is None or _is_int(value) else f"is {_shown(value)}, not an integer or null"
    if name == "hook":
        ok = isinstance(value, str) and VECTOR_HOOK.fullmatch(value)
        return None if ok else f"is {_shown(value)}, not a residual-stream hook template like {RESID_POST!r}"
    if name in ("n_shots", "n_contexts"):
        low = 0 if name == "n_shots" else 1
        return None if _is_int(value) and value >= low else f"is {_shown(value)}, not an integer >= {low}"
    if name == "versions":
        ok = isinstance(value, dict) and all(isinstance(v, str) for v in value.values())
        return None if ok else "is not an object of version strings"
    if name == "dev_accuracy":
        ok = (isinstance(value, list) and len(value) in (0, n_layers)
              and all(_is_number(v) and 0 <= v <= 1 for v in value))
        return None if ok else f"is not a list of {n_layers} accuracies in [0, 1] (or empty)"
    if name == "prompt_format":
        return _prompt_format_problem(value)
    if name == "kind":
        return None if value in KINDS else f"is {_shown(value)}, not one of {', '.join(KINDS)}"
    if name == "heads":
        ok = isinstance(value, list) and all(
            isinstance(h, list) and len(h) == 3 and _is_int(h[0]) and 0 <= h[0] < n_layers and _is_int(h[1])
            and h[1] >= 0 and _is_number(h[2]) for h in value)
        return None if ok else f"is not a list of [layer, head, effect] entries with layers below {n_layers}"
    if name == "recipe":
        return algebra.recipe_problem(value, n_layers)
    return None


def _prompt_format_problem(value) -> str | None:
    """Why `value` is not the fields of a PromptFormat, or None."""
    from tv_lens.tasks.prompts import PromptFormat

    if not isinstance(value, dict):
        return "is not an object"
    if not value:
        return None
    try:
        PromptFormat(**value)
    except (TypeError, ValueError) as err:
        return f"does not describe a prompt format ({str(err).splitlines()[0]})"
    if not all(isinstance(value.get(k, ""), str) for k in ("example_template", "query_template", "separator")):
        return "has templates that are not strings"
    if not isinstance(value.get("leading_space", False), bool):
        return "has a leading_space that is not true or false"
    return None


def _read_safetensors(path: Path, data: bytes) -> tuple[dict, dict[str, Tensor]]:
    """The string-metadata header and the tensors of the safetensors file `path` whose bytes are `data`, or a
    one-line error."""
    from safetensors import SafetensorError
    from safetensors.torch import load

    try:
        tensors = load(data)  # checks the header, its offsets and the data's length
        (size,) = struct.unpack_from("<Q", data)
        header = json.loads(data[8:8 + size]).get("__metadata__") or {}
        if not isinstance(header, dict):
            raise ValueError("its metadata is not an object")
    except (SafetensorError, OSError, RuntimeError, ValueError, struct.error) as err:
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise VectorFileError(f"{path} is not a readable task vector file (damaged, truncated or not "
                              f"safetensors: {reason}); re-create it with `tv-lens learn`") from None
    return header, tensors
