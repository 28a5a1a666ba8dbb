"""Where a model and a result came from: the spec a model was loaded from, its weights fingerprint,
and library versions.

What tv_lens knows about a loaded model is kept here, in a registry keyed weakly by the model object,
not as attributes on the third-party `TransformerBridge`; an entry goes away with its model.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from importlib.metadata import PackageNotFoundError, version
from weakref import WeakKeyDictionary

import torch

from tv_lens.models.bridge import Model


@dataclass(frozen=True)
class ModelRecord:
    """The spec a model was loaded from and its weights fingerprint (None until first computed)."""

    spec: str
    fingerprint: str | None = None


_RECORDS: WeakKeyDictionary = WeakKeyDictionary()


def remember(model: Model, spec: str, fingerprint: str | None = None) -> None:
    """Record that `model` was loaded from `spec` (with its fingerprint when the source file gives it)."""
    _RECORDS[model] = ModelRecord(spec, fingerprint)


def model_spec(model: Model) -> str:
    """The spec `model` was loaded from, or its config's name for a model tv_lens did not load."""
    record = _RECORDS.get(model)
    return record.spec if record is not None else model.cfg.model_name


def fingerprint(model: Model) -> str:
    """A short hash of a model's weights: what saved vectors and results are matched against.

    For an embedded model or a GGUF file it is the start of the file's SHA-256 (known without hashing the
    weights); otherwise SHA-256 over the weights' names and float32 values, computed once per model object.

    Args:
        model: a loaded model (any `TransformerBridge`).

    Returns:
        16 hex digits, followed by the dtype (e.g. `-bfloat16`) for a cached model loaded in another dtype
            than float32.
    """
    record = _RECORDS.get(model) or ModelRecord(model.cfg.model_name)
    if record.fingerprint is not None:
        return record.fingerprint
    digest = weights_hash(model.state_dict())
    _RECORDS[model] = replace(record, fingerprint=digest)
    return digest


def weights_hash(state_dict: dict[str, torch.Tensor]) -> str:
    """16 hex digits of SHA-256 over the names and float32 values of `state_dict`, in name order."""
    digest = hashlib.sha256()
    for name, tensor in sorted(state_dict.items()):
        digest.update(name.encode())
        digest.update(tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def versions() -> dict[str, str]:
    """Versions of the libraries that shape the numbers."""
    found = {}
    for package in ("tv-lens", "transformer-lens", "transformers", "torch"):
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            found[package] = "unknown"
    return found


def model_provenance(model: Model) -> dict:
    """The model's spec, weights fingerprint and shape."""
    return {
        "model": model_spec(model),
        "fingerprint": fingerprint(model),
        "n_layers": model.cfg.n_layers,
        "d_model": model.cfg.d_model,
    }
