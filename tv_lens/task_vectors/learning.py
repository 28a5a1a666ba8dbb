"""Learn: θ = A(S), the residual stream at the last token of `[demonstrations, dummy query]`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from typing import Literal, overload

import torch
from jaxtyping import Float
from torch import Tensor

from tv_lens.errors import TvLensError, TvLensTypeError
from tv_lens.models.bridge import Model
from tv_lens.models.provenance import model_provenance, versions
from tv_lens.patching.engine import Budget, Run, encode, predict, token_limit
from tv_lens.patching.guard import check_model
from tv_lens.patching.interventions import RESID_POST, check_layer
from tv_lens.task_vectors.vector import TaskVector
from tv_lens.tasks import Item, context_item
from tv_lens.tasks.prompts import PromptFormat


def learn(
    model: Model,
    demos: Sequence[tuple[str, str]],
    dummies: Sequence[str],
    *,
    layer: int | None = None,
    fmt: PromptFormat | None = None,
    task: str | None = None,
    seed: int | None = None,
) -> TaskVector:
    """Learn θ from demonstrations: the residual stream at the last token of `[demos, dummy query]`.

    θ is `resid_post` at the last token (the arrow) of each prompt of the demonstrations followed by a
    dummy query, averaged over the dummy queries, at every layer, from one forward pass per prompt (the
    demonstrations run once and their key/value cache serves every dummy query). For a task's θ over many
    demonstration sets, see `learn_task`.

    Args:
        model: a `TransformerBridge` in compatibility mode (`load_model`).
        demos: the demonstrations, (input, output) pairs of texts.
        dummies: dummy queries: inputs of the task, other than the demonstrations' (the paper uses 2).
        layer: the vector's default layer (where `apply` writes it); None leaves it unset, and `apply` then
            needs a `layer`.
        fmt: the prompt format; default `PromptFormat()` (`example:{x}->{y}`, no leading space). It is
            stored in the vector, which `apply` then writes queries in.
        task: a task name to record in the vector's provenance.
        seed: a seed to record in the vector's provenance (nothing is sampled here).

    Returns:
        A `TaskVector` [n_layers, d_model] with `n_shots = len(demos)`, `n_contexts = 1` and its provenance.

    Raises:
        TvLensTypeError: `demos` or `dummies` is one string, or a demonstration is not a pair.
        TvLensError: no demonstration or no dummy query; a layer out of range; a prompt over the model's token
            limit; an empty text.
        PromptTextError: a text the prompt format cannot hold (e.g. a line break in the arrow format).
        UnsupportedModelError: `model` is not a `TransformerBridge` in compatibility mode and eval mode.

    Example:
        ```python
        theta = tv.learn(model, [("hot", "cold"), ("up", "down"), ("big", "small")], ["old", "fast"], layer=8)
        tv.apply(model, theta, ["wet", "early"])
        ```
    """
    check_model(model)
    if isinstance(demos, str) or isinstance(dummies, str):
        raise TvLensTypeError("demos is a list of (x, y) pairs and dummies a list of inputs, not strings")
    if not demos:
        raise TvLensError("learn needs at least one demonstration (x, y) pair")
    if not dummies:
        raise TvLensError("learn needs at least one dummy query: pass dummies=[x1, x2] (inputs of the task)")
    if layer is not None:
        check_layer(model, layer)
    fmt = fmt or PromptFormat()
    item = context_item(_checked_demos(fmt, demos),
                        [fmt.check_text(x, f"dummy query {i}") for i, x in enumerate(dummies)])
    _check_fits(model, fmt.dummy_prompts(item))
    (theta,), _ = learn_items(model, [item], fmt)
    info = model_provenance(model)
    return TaskVector(
        vectors=theta, layer=layer, model=info["model"], fingerprint=info["fingerprint"],
        prompt_format=asdict(fmt), n_shots=len(demos), n_contexts=1, seed=seed, task=task,
        versions=versions(),
    )


def _checked_demos(fmt: PromptFormat, demos: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    """The demonstrations as (x, y) pairs of texts the prompt format can hold, else a one-line error."""
    checked = []
    for i, pair in enumerate(demos):
        if isinstance(pair, str) or not isinstance(pair, Sequence) or len(pair) != 2:
            raise TvLensTypeError(f"demonstration {i} must be an (input, output) pair, got {pair!r}")
        checked.append((fmt.check_text(pair[0], f"demonstration {i} input"),
                        fmt.check_text(pair[1], f"demonstration {i} output")))
    return checked


def _check_fits(model: Model, prompts: Sequence[str]) -> None:
    """Refuse prompts longer than the model's token limit before any batch is built."""
    limit = token_limit(model)
    for i, tokens in enumerate(encode(model, prompts)):
        if limit and len(tokens) > limit:
            raise TvLensError(f"the prompt of these demonstrations and dummy query {i} has {len(tokens)} tokens, "
                              f"over this model's limit of {limit}: use fewer or shorter demonstrations")


@overload
def learn_items(model: Model, items: Sequence[Item], fmt: PromptFormat, *, icl: Literal[True],
                reuse_prefix: bool = True, budget: Budget | None = None
                ) -> tuple[list[Float[Tensor, "n_layers d_model"]], list[int]]: ...
@overload
def learn_items(model: Model, items: Sequence[Item], fmt: PromptFormat, *, icl: Literal[False] = False,
                reuse_prefix: bool = True, budget: Budget | None = None
                ) -> tuple[list[Float[Tensor, "n_layers d_model"]], None]: ...
def learn_items(
    model: Model,
    items: Sequence[Item],
    fmt: PromptFormat,
    *,
    icl: bool = False,
    reuse_prefix: bool = True,
    budget: Budget | None = None,
) -> tuple[list[Float[Tensor, "n_layers d_model"]], list[int] | None]:
    """θ for each item (mean over its dummy queries) and, with `icl`, its ICL next token.

    Each item's demonstrations run once; the dummy queries and the real query reuse their
    key/value cache.
    """
    if any(not item.dummies for item in items):
        raise TvLensError("every item needs at least one dummy query to learn θ from (n_dummies >= 1; the paper "
                          "uses 2)")
    groups = []
    for item in items:
        prompts = fmt.dummy_prompts(item) + ([fmt.icl_prompt(item)] if icl else [])
        groups.append([Run(tokens) for tokens in encode(model, prompts)])
    names = [RESID_POST.format(layer=layer) for layer in range(model.cfg.n_layers)]
    outputs = predict(model, groups, capture=names, reuse_prefix=reuse_prefix, budget=budget)
    n_dummies = [len(item.dummies) for item in items]
    thetas = [torch.stack([o.stack() for o in out[:n]]).mean(0)
              for out, n in zip(outputs, n_dummies)]
    icl_tokens = [out[-1].token for out in outputs] if icl else None
    return thetas, icl_tokens
