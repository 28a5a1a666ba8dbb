"""Apply: f(x; θ), the bare query with θ written into the residual stream at the last token."""

from __future__ import annotations

from collections.abc import Sequence

from jaxtyping import Float
from torch import Tensor

from tv_lens.models import fingerprint
from tv_lens.prompts import PromptFormat
from tv_lens.runner import RESID_POST, Budget, Patch, Run, decode, encode, run
from tv_lens.vectors import TaskVector


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


def apply(
    model,
    theta: TaskVector,
    queries: Sequence[str],
    *,
    layer: int | None = None,
    mode: str = "replace",
    alpha: float = 1.0,
    positions: str = "last",
    fmt: PromptFormat | None = None,
    allow_transfer: bool = False,
    budget: Budget | None = None,
) -> list[str]:
    """Next-token predictions for `queries` with no demonstrations, θ patched in at `layer`
    (at the last query token, or with `positions="all"` at every query token after BOS)."""
    if not queries:
        raise ValueError("apply needs at least one query")
    check_compatible(model, theta, allow_transfer)
    fmt = fmt or (PromptFormat(**theta.prompt_format) if theta.prompt_format else PromptFormat())
    vector = theta.at(layer)
    layer = theta.layer if layer is None else layer
    tokens = apply_tokens(model, [fmt.query(q) for q in queries], [vector] * len(queries), layer,
                          mode=mode, alpha=alpha, positions=positions, hook=theta.hook, budget=budget)
    return decode(model, tokens)


def apply_tokens(
    model,
    prompts: Sequence[str],
    vectors: Sequence[Float[Tensor, " d_model"]],
    layer: int,
    *,
    mode: str = "replace",
    alpha: float = 1.0,
    positions: str = "last",
    hook: str = RESID_POST,
    budget: Budget | None = None,
) -> list[int]:
    """Greedy next token of each prompt with its own vector patched at `layer` of `hook` (last
    position, or every position after BOS)."""
    runs = [Run(t, Patch(layer, v, mode=mode, alpha=alpha, hook=hook, positions=positions))
            for t, v in zip(encode(model, prompts), vectors)]
    return [o.token for o in run(model, runs, budget=budget)]
