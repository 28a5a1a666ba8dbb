"""`TaskVector`: θ at every layer, with the provenance needed to trust and reuse it."""

from __future__ import annotations

from dataclasses import dataclass, field

from jaxtyping import Float
from torch import Tensor

from tv_lens.runner import RESID_POST

SCHEMA_VERSION = 1


@dataclass
class TaskVector:
    """θ = A(S): the residual stream at the last token of `[demos, dummy query]`, for every layer.

    `vectors[L]` is θ read at `hook.format(layer=L)`; `layer` is the layer `apply` uses by default
    (chosen by a layer sweep, or given by the user).
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
    schema_version: int = SCHEMA_VERSION

    @property
    def n_layers(self) -> int:
        return self.vectors.shape[0]

    @property
    def d_model(self) -> int:
        return self.vectors.shape[1]

    def at(self, layer: int | None = None) -> Float[Tensor, "d_model"]:
        """θ at `layer` (default: the vector's own layer)."""
        layer = self.layer if layer is None else layer
        if layer is None:
            raise ValueError("this task vector has no default layer: pass layer=L")
        if not 0 <= layer < self.n_layers:
            raise ValueError(f"layer {layer} out of range: this vector has layers 0..{self.n_layers - 1}")
        return self.vectors[layer]
