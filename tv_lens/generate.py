"""Multi-token answers: greedy generation with θ patched in, through the key/value cache.

The prompt runs once with the patch (at its last token, or every query token); each generated
token then runs alone against the cache. By default generated tokens are not patched: that is the
paper's single patch, and θ reaches later tokens only through the keys and values of the patched
prompt. `patch_generated=True` writes θ into every generated token as well.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import torch
from jaxtyping import Float
from torch import Tensor

from tv_lens import hooks
from tv_lens.apply import check_compatible
from tv_lens.prompts import PromptFormat
from tv_lens.runner import (
    Budget,
    Patch,
    _check_window,
    _count,
    _left_pad,
    _patch_hooks,
    check_patch,
    encode,
    query_positions,
)
from tv_lens.tasks import Task
from tv_lens.vectors import TaskVector

STOP = "\n"


def generate(
    model,
    theta: TaskVector | None,
    queries: Sequence[str],
    *,
    max_new_tokens: int = 16,
    layer: int | None = None,
    mode: str = "replace",
    alpha: float = 1.0,
    positions: str = "last",
    patch_generated: bool = False,
    stop: str = STOP,
    fmt: PromptFormat | None = None,
    allow_transfer: bool = False,
    budget: Budget | None = None,
) -> list[str]:
    """Greedy continuation of each bare query `x ->` with θ applied, cut before the first `stop`.

    `theta=None` generates from the bare queries without a patch (the zero-shot baseline).
    """
    if not queries:
        raise ValueError("generate needs at least one query")
    if theta is not None:
        check_compatible(model, theta, allow_transfer)
        fmt = fmt or PromptFormat(**theta.prompt_format)
        layer = theta.layer if layer is None else layer
        patch = Patch(layer, theta.at(layer), mode=mode, alpha=alpha, hook=theta.hook, positions=positions)
    else:
        patch = None
    fmt = fmt or PromptFormat()
    prompts = encode(model, [fmt.query(q) for q in queries])
    return generate_tokens(model, prompts, [patch] * len(prompts), max_new_tokens=max_new_tokens,
                           patch_generated=patch_generated, stop=stop, budget=budget)


@torch.inference_mode()
def generate_tokens(
    model,
    prompts: Sequence[Sequence[int]],
    patches: Sequence[Patch | None] | None = None,
    *,
    max_new_tokens: int = 16,
    patch_generated: bool = False,
    stop: str = STOP,
    budget: Budget | None = None,
) -> list[str]:
    """Greedy text after each token prompt (its own patch or None), cut before the first `stop`.

    Per batch (as many prompts as `budget` allows for their longest prompt plus `max_new_tokens`):
    one left-padded pass over the prompts, then one token per step for the rows still running (a
    row stops at `stop`, at EOS, or after `max_new_tokens`).
    """
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be at least 1, got {max_new_tokens}")
    budget = budget or Budget()
    patches = list(patches) if patches is not None else [None] * len(prompts)
    for patch in patches:
        check_patch(model, patch)
    width = max((len(p) for p in prompts), default=0) + max_new_tokens
    rows = max(1, min(budget.rows, budget.tokens // width))
    texts: list[str] = []
    for start in range(0, len(prompts), rows):
        texts += _generate_batch(model, prompts[start:start + rows], patches[start:start + rows],
                                 max_new_tokens, patch_generated, stop)
    return texts


def _generate_batch(model, prompts, patches, max_new_tokens, patch_generated, stop) -> list[str]:
    tokens, mask = _left_pad(model, prompts)
    _check_window(model, tokens.shape[1] + max_new_tokens)
    logits, cache = _step(model, tokens, mask, None, patches)
    generated: list[list[int]] = [[] for _ in prompts]
    active = list(range(len(prompts)))
    for step in range(max_new_tokens):
        next_tokens = logits.argmax(-1)
        still = []
        for i, (row, token) in enumerate(zip(active, next_tokens.tolist())):
            generated[row].append(token)
            if not _finished(model, generated[row], stop):
                still.append(i)
        if not still or step == max_new_tokens - 1:
            break
        keep = torch.tensor(still, device=mask.device)
        if len(still) < len(active):
            cache.batch_select_indices(keep)
        active = [active[i] for i in still]
        mask = torch.cat([mask[keep], torch.ones_like(mask[keep, :1])], dim=1)
        step_patches = [patches[row] if patch_generated else None for row in active]
        logits, cache = _step(model, next_tokens[keep][:, None], mask, cache, step_patches)
    return [model.tokenizer.decode(g, skip_special_tokens=True).split(stop)[0] for g in generated]


def _finished(model, generated: list[int], stop: str) -> bool:
    return generated[-1] == model.tokenizer.eos_token_id or stop in model.tokenizer.decode(generated)


def _step(model, tokens, mask, cache, patches) -> tuple[Float[Tensor, "batch d_vocab"], object]:
    """One forward of `tokens` after `cache` (None: from scratch), with patches; last-position logits."""
    query = query_positions(model, tokens, mask[:, -tokens.shape[1]:])
    extra = {"past_key_values": cache} if cache is not None else {}
    with hooks.hooked(model, _patch_hooks(patches, query)), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*past_key_values.*deprecated", category=FutureWarning)
        logits, cache = model(tokens, attention_mask=mask, return_type="logits_and_cache",
                              logits_to_keep=1, **extra)
    _count(tokens, mask[:, -tokens.shape[1]:])
    if torch.isnan(logits).any():
        raise FloatingPointError("NaN in the model's activations: load the model in float32 (dtype=torch.float32)")
    return logits[:, -1], cache


def score_generation(task: Task, query: str, text: str, scoring: str | None = None) -> bool:
    """Whether generated `text` answers `query`: its first line, stripped, must equal an accepted
    answer ("exact") or start with one ("prefix": the whole answer, then anything, e.g. "Paris, France").

    `scoring` defaults to "prefix" for prefix-scored tasks and "exact" otherwise.
    """
    scoring = scoring or ("prefix" if task.scoring == "prefix" else "exact")
    if scoring not in ("exact", "prefix"):
        raise ValueError(f"generation scoring must be 'exact' or 'prefix', not {scoring!r}")
    line = text.split(STOP)[0].strip()
    answers = [a.strip() for a in task.answers(query) if a.strip()]
    if scoring == "exact":
        return line in answers
    return any(line.startswith(a) for a in answers)
