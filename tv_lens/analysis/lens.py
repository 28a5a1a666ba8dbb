"""The unembedding lens: what a residual-stream vector (θ) promotes, read through the model's own
final norm and unembedding (`model.unembed(model.ln_final(x))`)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Float
from torch import Tensor

from tv_lens.codec import Record
from tv_lens.errors import TvLensError
from tv_lens.models.bridge import Model
from tv_lens.patching.guard import check_model
from tv_lens.task_vectors.vector import TaskVector


@dataclass(frozen=True)
class TopTokens(Record):
    """The `k` tokens a vector promotes most, best first, with their lens logits."""

    tokens: list[str]
    ids: list[int]
    scores: list[float]


@torch.inference_mode()
def project(model: Model, x: Float[Tensor, "... d_model"]) -> Float[Tensor, "... d_vocab"]:
    """Lens logits of `x`: the final norm (fresh statistics per vector), then the unembedding."""
    x = x.to(device=model.cfg.device, dtype=model.W_U.dtype)
    return model.unembed(model.ln_final(x))


def as_vector(theta_or_vector: TaskVector | Tensor, layer: int | None = None) -> Float[Tensor, " d_model"]:
    """The single vector to project: `theta.at(layer)` for a TaskVector, row `layer` of an
    [n_layers, d_model] tensor, or a [d_model] tensor as is."""
    if isinstance(theta_or_vector, TaskVector):
        return theta_or_vector.at(layer)
    vector = theta_or_vector
    if vector.ndim == 2:
        if layer is None:
            raise TvLensError("an [n_layers, d_model] tensor needs layer=L to choose the vector to project")
        return vector[layer]
    if vector.ndim != 1:
        raise TvLensError(f"expected a [d_model] or [n_layers, d_model] tensor, got shape {tuple(vector.shape)}")
    return vector


def top_tokens(
    model: Model,
    theta_or_vector: TaskVector | Tensor,
    k: int = 20,
    layer: int | None = None,
    centre: Float[Tensor, " d_model"] | None = None,
) -> TopTokens:
    """What a vector promotes: the tokens with the highest logits when it is read through the unembedding.

    The vector goes through the model's own final norm (with fresh statistics) and unembedding,
    `model.unembed(model.ln_final(x))`, as the last residual stream would.

    Args:
        model: a `TransformerBridge` in compatibility mode (`load_model`).
        theta_or_vector: a `TaskVector`, an [n_layers, d_model] tensor, or one [d_model] vector.
        k: how many tokens.
        layer: the row of a `TaskVector` (default its own layer) or of an [n_layers, d_model] tensor
            (required there); unused for a [d_model] vector.
        centre: a [d_model] vector subtracted first, e.g. the mean θ over tasks, which removes what every
            task shares.

    Returns:
        The tokens (decoded), their ids and their lens logits, best first.

    Raises:
        TvLensError: a tensor of another shape or width than the model's `d_model`; no `layer` for an
            [n_layers, d_model] tensor or a vector without a layer.
        UnsupportedModelError: `model` is not a `TransformerBridge` in compatibility mode and eval mode.
    """
    check_model(model)
    vector = as_vector(theta_or_vector, layer)
    if vector.shape[-1] != model.cfg.d_model:
        raise TvLensError(f"vector of size {vector.shape[-1]} does not fit this model's d_model {model.cfg.d_model}: "
                          f"project it through the model it was learned on")
    if centre is not None:
        vector = vector - centre.to(vector)
    logits = project(model, vector).float().cpu()
    scores, ids = torch.topk(logits, min(k, logits.shape[-1]))
    top: list[int] = ids.tolist()
    return TopTokens(tokens=[model.tokenizer.decode([i]) for i in top], ids=top, scores=scores.tolist())
