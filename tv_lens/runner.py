"""Batched, padding-correct execution of many short prompts that share prefixes.

A `Group` is a set of token sequences that start alike (one item's demonstrations followed by its
dummy queries and its real query; or one query patched at each layer). The shared prefix is run
once and reused through the key/value cache; only the differing suffixes are new work. Batches are
left-padded with an attention mask (the bridge derives position ids from it, so every row's
positions start at its first real token), sized by a token budget, and logits are computed for the
last position only.
"""

from __future__ import annotations

import copy
import warnings
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from tv_lens import hooks

RESID_POST = "blocks.{layer}.hook_resid_post"


@dataclass(frozen=True)
class Patch:
    """Write `vector` into the residual stream at `layer` (paper: replace, last position).

    `positions="all"` edits every real token after BOS instead of the last one; a run with such a
    patch never shares a cached prefix (its whole sequence is the edited query).
    """

    layer: int
    vector: Float[Tensor, " d_model"]
    mode: str = "replace"
    alpha: float = 1.0
    hook: str = RESID_POST
    positions: str = "last"

    def __post_init__(self) -> None:
        if self.mode not in ("replace", "add"):
            raise ValueError(f"patch mode must be 'replace' or 'add', not {self.mode!r}")
        if self.positions not in ("last", "all"):
            raise ValueError(f"patch positions must be 'last' or 'all', not {self.positions!r}")


@dataclass
class Run:
    """One sequence to run, with an optional patch (at its last position, or every query position)."""

    tokens: list[int]
    patch: Patch | None = None


@dataclass
class Output:
    """What one run produced at its last position."""

    token: int
    logits: Float[Tensor, " d_vocab"] | None = None
    resid: Float[Tensor, "n_layers d_model"] | None = None


@dataclass
class Budget:
    """How much work one forward pass may take."""

    tokens: int = 4096
    rows: int = 128


@dataclass
class Counter:
    """Tokens pushed through the model (for throughput figures)."""

    tokens: int = 0
    forwards: int = 0
    padded_tokens: int = 0
    logit_rows: int = 0


COUNTER = Counter()


def encode(model, texts: Sequence[str]) -> list[list[int]]:
    """Token ids of each text as the model reads it (with the tokenizer's default BOS)."""
    return [model.to_tokens(text)[0].tolist() for text in texts]


def decode(model, tokens: Sequence[int]) -> list[str]:
    """The text of each single token."""
    return [model.tokenizer.decode([t]) for t in tokens]


def run_groups(
    model,
    groups: Sequence[Sequence[Run]],
    *,
    capture_layers: Sequence[int] = (),
    keep_logits: bool = False,
    reuse_prefix: bool = True,
    budget: Budget | None = None,
) -> list[list[Output]]:
    """Run every group; outputs come back in the same nesting and order as `groups`.

    With `reuse_prefix`, each group's longest common token prefix is run once and its key/value
    cache serves every run of the group; otherwise each run is a full, independent sequence.
    `capture_layers` records `resid_post` at the last position of those layers (after patches).
    """
    budget = budget or Budget()
    _check_runs(model, groups)
    prefix_lens = [_shared_prefix_len(g) if reuse_prefix else 0 for g in groups]
    order = sorted(range(len(groups)), key=lambda i: (prefix_lens[i], len(groups[i])))
    results: list[list[Output] | None] = [None] * len(groups)
    for chunk in _chunks(order, groups, prefix_lens, budget):
        outputs = _run_chunk(model, [groups[i] for i in chunk], [prefix_lens[i] for i in chunk],
                             capture_layers, keep_logits, budget)
        for i, out in zip(chunk, outputs):
            results[i] = out
    return results


def run(model, runs: Sequence[Run], **kwargs) -> list[Output]:
    """Run independent sequences (no shared prefix): a thin use of `run_groups`."""
    return [out[0] for out in run_groups(model, [[r] for r in runs], **kwargs)]


def _check_runs(model, groups: Sequence[Sequence[Run]]) -> None:
    for group in groups:
        if not group:
            raise ValueError("empty group of runs: every group needs at least one sequence")
        for r in group:
            if not r.tokens:
                raise ValueError("empty token sequence: every prompt needs at least one token")
            check_patch(model, r.patch)


def check_layer(model, layer: int) -> None:
    """Refuse a layer the model lacks."""
    if not 0 <= layer < model.cfg.n_layers:
        raise ValueError(f"layer {layer} out of range: this model has layers 0..{model.cfg.n_layers - 1}")


def check_patch(model, patch: Patch | None) -> None:
    """Refuse a patch at a layer the model lacks, or with a vector of another width."""
    if patch is None:
        return
    check_layer(model, patch.layer)
    if patch.vector.shape[-1] != model.cfg.d_model:
        raise ValueError(
            f"vector of size {patch.vector.shape[-1]} does not fit this model's "
            f"d_model {model.cfg.d_model}: it was learned on another model"
        )


def _shared_prefix_len(group: Sequence[Run]) -> int:
    """Tokens every run of the group starts with, leaving each run at least one token of its own
    (none when a run patches all its positions)."""
    if len(group) < 2 or any(r.patch is not None and r.patch.positions == "all" for r in group):
        return 0
    first = group[0].tokens
    n = min(len(r.tokens) for r in group) - 1
    for r in group[1:]:
        k = 0
        while k < n and r.tokens[k] == first[k]:
            k += 1
        n = k
    return n


def _chunks(order: list[int], groups, prefix_lens: list[int], budget: Budget):
    """Consecutive groups (at least one at a time) whose padded passes fit the budget."""
    chunk: list[int] = []
    for i in order:
        if chunk and _over_budget(chunk + [i], groups, prefix_lens, budget):
            yield chunk
            chunk = []
        chunk.append(i)
    if chunk:
        yield chunk


def _over_budget(chunk: list[int], groups, prefix_lens: list[int], budget: Budget) -> bool:
    """Whether the chunk's prefix pass or its suffix pass (rows x padded width) exceeds the budget."""
    rows = sum(len(groups[i]) for i in chunk)
    prefix_tokens = max(prefix_lens[i] for i in chunk) * len(chunk)
    suffix_tokens = max(len(r.tokens) for i in chunk for r in groups[i]) * rows
    return rows > budget.rows or max(prefix_tokens, suffix_tokens) > budget.tokens


def _left_pad(model, seqs: Sequence[Sequence[int]]) -> tuple[Tensor, Tensor]:
    """Left-padded token ids and their attention mask (1 on real tokens)."""
    width = max(len(s) for s in seqs)
    pad = model.tokenizer.pad_token_id
    pad = 0 if pad is None else pad
    tokens = torch.full((len(seqs), width), pad, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for row, s in enumerate(seqs):
        if s:
            tokens[row, width - len(s):] = torch.tensor(s)
            mask[row, width - len(s):] = 1
    device = model.cfg.device
    return tokens.to(device), mask.to(device)


def _check_window(model, width: int) -> None:
    """Sliding-window attention counts padded positions: refuse widths where that would matter."""
    window = getattr(getattr(model, "original_model", None), "config", None)
    window = getattr(window, "sliding_window", None)
    if window and width > window:
        raise ValueError(
            f"a batch of {width} tokens (with padding) exceeds this model's sliding attention window "
            f"of {window}: padding would change what is attended; use shorter prompts"
        )


@torch.inference_mode()
def _run_chunk(model, groups, prefix_lens, capture_layers, keep_logits, budget):
    runs = [(gi, r) for gi, g in enumerate(groups) for r in g]
    suffixes = [r.tokens[prefix_lens[gi]:] for gi, r in runs]
    _check_window(model, max(prefix_lens) + max(len(s) for s in suffixes))
    cache = prefix_mask = None
    if max(prefix_lens) > 0:
        prefix_tokens, prefix_mask = _left_pad(model, [r[0].tokens[:n] for r, n in zip(groups, prefix_lens)])
        _, cache = model(prefix_tokens, attention_mask=prefix_mask, return_type="logits_and_cache",
                         logits_to_keep=1)
        _count(prefix_tokens, prefix_mask)
    outputs: list[Output] = []
    for start in range(0, len(runs), budget.rows):
        part = range(start, min(start + budget.rows, len(runs)))
        tokens, mask = _left_pad(model, [suffixes[i] for i in part])
        rows_cache = None
        if cache is not None:
            owners = torch.tensor([runs[i][0] for i in part], device=mask.device)
            rows_cache = copy.deepcopy(cache)
            rows_cache.batch_select_indices(owners)
            mask = torch.cat([prefix_mask[owners], mask], dim=1)
        outputs += _forward_last(model, tokens, mask, rows_cache, [runs[i][1].patch for i in part],
                                 capture_layers, keep_logits)
    by_group: list[list[Output]] = [[] for _ in groups]
    for (gi, _), out in zip(runs, outputs):
        by_group[gi].append(out)
    return by_group


def _patch_hooks(
    patches: Sequence[Patch | None], query: Bool[Tensor, "batch pos"] | None = None
) -> list[hooks.HookPair]:
    """One hook per (hook name, mode, positions), editing the rows that carry a patch: at the last
    position, or (positions "all") wherever `query` is true."""
    rows_by_key: dict[tuple[str, str, str], list[int]] = defaultdict(list)
    for row, p in enumerate(patches):
        if p is not None:
            rows_by_key[(p.hook.format(layer=p.layer), p.mode, p.positions)].append(row)
    pairs = []
    for (name, mode, positions), rows in rows_by_key.items():
        vectors = torch.stack([patches[r].vector for r in rows])
        if mode == "add":
            alphas = torch.tensor([patches[r].alpha for r in rows], device=vectors.device, dtype=vectors.dtype)
            vectors = vectors * alphas[:, None]
        if positions == "all":
            pairs.append(_masked_hook(name, vectors, query[rows], rows, mode))
        elif mode == "replace":
            pairs.append(hooks.replacing(name, vectors, positions=-1, rows=rows))
        else:
            pairs.append(hooks.adding(name, vectors, positions=-1, rows=rows))
    return pairs


def _masked_hook(name: str, vectors: Float[Tensor, "rows d_model"], where: Bool[Tensor, "rows pos"],
                 rows: list[int], mode: str) -> hooks.HookPair:
    """Replace or add each row's vector at the positions where `where` is true."""
    index = torch.tensor(rows)

    def hook_fn(act: Tensor, hook) -> Tensor:
        current = act[index.to(act.device)]
        value = vectors.to(current)[:, None, :]
        new = value.expand_as(current) if mode == "replace" else current + value
        act[index.to(act.device)] = torch.where(where.to(act.device)[..., None], new, current)
        return act

    return name, hook_fn


def query_positions(model, tokens: Int[Tensor, "batch pos"], mask: Int[Tensor, "batch pos"]
                    ) -> Bool[Tensor, "batch pos"]:
    """The real (unpadded) positions of left-padded `tokens`, less each row's leading BOS."""
    real = mask.bool()
    first = real.int().argmax(dim=1)
    rows = torch.arange(tokens.shape[0], device=tokens.device)
    bos = model.tokenizer.bos_token_id
    leading_bos = real[rows, first] & (tokens[rows, first] == bos) if bos is not None else None
    if leading_bos is not None:
        real[rows[leading_bos], first[leading_bos]] = False
    return real


def _forward_last(model, tokens, mask, cache, patches, capture_layers, keep_logits) -> list[Output]:
    store: dict[str, Tensor] = {}
    names = [RESID_POST.format(layer=layer) for layer in capture_layers]
    query = query_positions(model, tokens, mask[:, -tokens.shape[1]:])
    fwd_hooks = _patch_hooks(patches, query) + hooks.capture_hooks(names, store, positions=-1)
    extra = {"past_key_values": cache} if cache is not None else {"use_cache": False}
    with hooks.hooked(model, fwd_hooks), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*past_key_values.*", category=FutureWarning)
        logits = model(tokens, attention_mask=mask, logits_to_keep=1, **extra)[:, -1]
    _count(tokens, mask[:, -tokens.shape[1]:])
    if torch.isnan(logits).any():
        raise FloatingPointError(
            "NaN in the model's activations: load the model in float32 (dtype=torch.float32)"
        )
    resid = torch.stack([store[n] for n in names], dim=1).cpu() if names else None
    top = logits.argmax(-1).tolist()
    return [
        Output(token=top[i], logits=logits[i].cpu() if keep_logits else None,
               resid=resid[i] if resid is not None else None)
        for i in range(len(top))
    ]


def _count(tokens: Tensor, mask: Tensor) -> None:
    COUNTER.forwards += 1
    COUNTER.logit_rows += tokens.shape[0]
    COUNTER.tokens += int(mask.sum())
    COUNTER.padded_tokens += tokens.numel()
