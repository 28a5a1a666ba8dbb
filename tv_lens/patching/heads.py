"""What each attention head writes into the residual stream.

Head h of layer l outputs z(l,h) [d_head] at `blocks.l.attn.hook_z`, before the output projection.
Its contribution is c(l,h) = z(l,h) @ W_O[l,h] [d_model]: z placed in head h's slice of the
projection's input, zeros elsewhere, through the projection (Todd et al. 2024). The contributions of
all heads plus the attention output bias sum to the attention output before any post-attention norm
(`blocks.l.attn.hook_out`).

Models with a post-attention norm (Gemma 3) add norm(x) = g * x / s(x) to the residual stream, x that
sum and s(x) its RMS. What head h adds to the residual stream is then its share g * c(l,h) / s(x): linear
in the head's output, and the shares of all heads and the bias sum exactly to `blocks.l.hook_attn_out`.
Without such a norm the share is c(l,h) itself.
"""

from __future__ import annotations

import torch
from jaxtyping import Float
from torch import Tensor

from tv_lens.errors import TvLensError
from tv_lens.models.bridge import Model
from tv_lens.patching import hooks

PRE_NORM_HOOK = "blocks.{layer}.attn.hook_out"
ATTN_OUT_HOOK = "blocks.{layer}.hook_attn_out"
NORM_SCALE_HOOK = "blocks.{layer}.ln1_post.hook_scale"


def has_post_attention_norm(model: Model) -> bool:
    """Whether the model normalises the attention output before adding it to the residual stream."""
    return hasattr(model.blocks[0], "ln1_post")


def head_contributions(
    model: Model, layer: int, z: Float[Tensor, "... n_heads d_head"]
) -> Float[Tensor, "... n_heads d_model"]:
    """Each head's output through its slice of layer `layer`'s output projection (before any norm)."""
    w_o = model.blocks[layer].attn.W_O
    if z.shape[-2:] != w_o.shape[:2]:
        raise TvLensError(f"head outputs of shape {tuple(z.shape)} do not end in this model's [n_heads, d_head] "
                          f"{list(w_o.shape[:2])}: pass every head's output (zeros for heads left out)")
    return torch.einsum("...hd,hdm->...hm", z.to(w_o), w_o)


def attention_bias(model: Model, layer: int) -> Float[Tensor, " d_model"]:
    """The output projection's bias of layer `layer` (zeros for a bias-free projection)."""
    bias = model.blocks[layer].attn.b_O
    if bias is None:
        return torch.zeros(model.cfg.d_model, device=model.cfg.device, dtype=model.W_U.dtype)
    return bias


@torch.inference_mode()
def to_residual(
    model: Model, layer: int, x: Float[Tensor, "... d_model"], scale: Float[Tensor, "..."]
) -> Float[Tensor, "... d_model"]:
    """What `x`, a part of layer `layer`'s pre-norm attention output whose whole has RMS `scale`
    (`blocks.l.ln1_post.hook_scale`), adds to the residual stream: g * x / scale under a
    post-attention norm, `x` itself without one."""
    if not has_post_attention_norm(model):
        return x
    norm = model.blocks[layer].ln1_post
    name = NORM_SCALE_HOOK.format(layer=layer)
    with hooks.capturing(model, [name]) as own:
        normed = norm(x)  # g * x / s(x); times s(x) / scale gives g * x / scale
    return normed * own[name] / scale.to(normed)[..., None]
