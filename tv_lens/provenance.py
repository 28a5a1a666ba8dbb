"""Where a result came from: model, weights fingerprint and library versions."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from tv_lens.models import fingerprint


def versions() -> dict[str, str]:
    """Versions of the libraries that shape the numbers."""
    found = {}
    for package in ("tv-lens", "transformer-lens", "transformers", "torch"):
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            found[package] = "unknown"
    return found


def model_provenance(model) -> dict:
    """The model's spec, weights fingerprint and shape."""
    return {
        "model": getattr(model, "tv_lens_spec", model.cfg.model_name),
        "fingerprint": fingerprint(model),
        "n_layers": model.cfg.n_layers,
        "d_model": model.cfg.d_model,
    }
