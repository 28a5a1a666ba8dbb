"""The engine: every forward pass of tv_lens, batched and padding-correct, with interventions.

`predict` runs many short prompts, each a `Run` (tokens, interventions, target token ids), and
gives a `Prediction` per run: the greedy next token, and on request the last-position logits, the
activations at chosen hook points and the probabilities of the run's targets. Runs come alone or in
groups that start alike (one item's demonstrations, then its dummy queries and its real query; or
one query patched at each layer): a group's shared prefix runs once and its key/value cache serves
every run of the group. Batches are left-padded with an attention mask (the bridge derives position
ids from it), sized by a token `Budget`, and logits are computed at the last position only.
`prefill` / `step` are the same forward pass for token-by-token generation through the cache.
`with counting() as count:` counts the tokens pushed through the model inside the block. A call
that runs longer than a second draws a progress bar of its padded tokens (`tv_lens.progress`: on a
terminal only), labelled by the caller's `progress.stage`. Any model is checked and held as
`tv_lens.patching.guard` says: a bridge in compatibility mode, its key/value cache routed during each pass,
one pass at a time per model (Python threads that share a model wait for each other).
"""

from __future__ import annotations

import contextvars
import copy
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Literal, overload

import torch
from jaxtyping import Float, Int
from torch import Tensor
from transformers.cache_utils import Cache

from tv_lens import threads
from tv_lens.errors import TvLensError, TvLensTypeError
from tv_lens.models.bridge import Model
from tv_lens.patching import guard, hooks
from tv_lens.patching.interventions import RESID_POST, Intervention, batch_hooks, check_intervention, query_positions
from tv_lens.progress import counter, current_stage


class NaNActivationsError(TvLensError, FloatingPointError):
    """NaN in the model's activations (a model in half precision, or a patched-in vector that is not finite):
    a `TvLensError` and a `FloatingPointError`, so either `except` catches it."""


@dataclass(frozen=True)
class Run:
    """One token sequence to run, with its interventions (applied in order) and the token ids whose
    next-token probabilities to report (`Prediction.target_probs`)."""

    tokens: Sequence[int]
    interventions: tuple[Intervention, ...] = ()
    targets: tuple[int, ...] = ()

    @property
    def reuses_prefix(self) -> bool:
        """Whether this run may share a cached prefix with its group (it edits its last token only)."""
        return all(iv.reuses_prefix for iv in self.interventions)


@dataclass
class Prediction:
    """What one run produced at its last position."""

    token: int
    logits: Float[Tensor, " d_vocab"] | None = None
    captured: dict[str, Tensor] = field(default_factory=dict)
    target_probs: Float[Tensor, " n_targets"] | None = None

    def stack(self) -> Float[Tensor, "n_captured ..."]:
        """The captured activations stacked in the order they were asked for (e.g. [n_layers, d_model])."""
        return torch.stack(list(self.captured.values()))


@dataclass
class Budget:
    """How much work one forward pass may take."""

    tokens: int = 4096
    rows: int = 128


@dataclass
class TokenCount:
    """Tokens pushed through the model (for throughput figures)."""

    tokens: int = 0
    forwards: int = 0
    padded_tokens: int = 0
    logit_rows: int = 0


BAR_DELAY = 1.0  # seconds of work before `predict` draws its bar: quick calls draw none

_COUNTS: contextvars.ContextVar[tuple[TokenCount, ...]] = contextvars.ContextVar("tv_lens_counts", default=())


@contextmanager
def counting() -> Iterator[TokenCount]:
    """Within the block, count every forward pass of the engine (blocks may nest)."""
    count = TokenCount()
    token = _COUNTS.set(_COUNTS.get() + (count,))
    try:
        yield count
    finally:
        _COUNTS.reset(token)


def encode(model: Model, texts: Sequence[str]) -> list[list[int]]:
    """Token ids of each text as the model reads it (with the tokenizer's default BOS), never
    truncated (too long a text is refused where it is run); a model the engine cannot run is refused here."""
    guard.check_model(model)
    return [model.to_tokens(text, truncate=False)[0].tolist() for text in texts]


def decode(model: Model, tokens: Sequence[int]) -> list[str]:
    """The text of each single token."""
    return [model.tokenizer.decode([t]) for t in tokens]


def token_limit(model: Model) -> int | None:
    """The longest padded batch the engine runs: the sliding attention window where the model has
    one (padding counts against it), else the model's context length."""
    config = getattr(getattr(model, "original_model", None), "config", None)
    return getattr(config, "sliding_window", None) or getattr(model.cfg, "n_ctx", None)


def check_width(model: Model, width: int) -> None:
    """Refuse a batch wider than `token_limit` (sliding-window attention counts padded positions)."""
    limit = token_limit(model)
    if limit and width > limit:
        raise TvLensError(
            f"a batch of {width} tokens (with padding) exceeds this model's limit of {limit} tokens "
            f"(its attention window): use shorter prompts"
        )


@overload
def predict(model: Model, runs: Sequence[Run], *, capture: Sequence[str | int] = (), logits: bool = False,
            reuse_prefix: bool = True, budget: Budget | None = None) -> list[Prediction]: ...
@overload
def predict(model: Model, runs: Sequence[Sequence[Run]], *, capture: Sequence[str | int] = (), logits: bool = False,
            reuse_prefix: bool = True, budget: Budget | None = None) -> list[list[Prediction]]: ...
def predict(
    model: Model,
    runs: Sequence[Run] | Sequence[Sequence[Run]],
    *,
    capture: Sequence[str | int] = (),
    logits: bool = False,
    reuse_prefix: bool = True,
    budget: Budget | None = None,
) -> list[Prediction] | list[list[Prediction]]:
    """A `Prediction` per run, in the order and nesting of `runs` (runs, or groups of runs).

    `capture` names hook points (an int L means `blocks.L.hook_resid_post`) whose activations at
    the last position are kept (after the interventions). With `reuse_prefix`, each group's longest
    common token prefix runs once and its key/value cache serves every run of the group.
    """
    guard.check_model(model)
    if not runs:
        return []
    flat = isinstance(runs[0], Run)
    if any(isinstance(r, Run) != flat for r in runs):
        raise TvLensTypeError("runs must be all Runs or all groups (sequences) of Runs, not a mix of both")
    groups = [[r] if isinstance(r, Run) else list(r) for r in runs]
    budget = budget or Budget()
    names = [RESID_POST.format(layer=c) if isinstance(c, int) else c for c in capture]
    _check_groups(model, groups)
    reuse_prefix = reuse_prefix and guard.reuses_prefixes(model)
    prefix_lens = [_shared_prefix_len(g) if reuse_prefix else 0 for g in groups]
    order = sorted(range(len(groups)), key=lambda i: (prefix_lens[i], len(groups[i])))
    results: list[list[Prediction]] = [[] for _ in groups]
    chunks = [(chunk, _padded_work(chunk, groups, prefix_lens))
              for chunk in _chunks(order, groups, prefix_lens, budget, token_limit(model))]
    with counter(sum(work for _, work in chunks), current_stage(), unit="tok", scale=True, delay=BAR_DELAY) as done:
        for chunk, work in chunks:
            outputs = _run_chunk(model, [groups[i] for i in chunk], [prefix_lens[i] for i in chunk],
                                 names, logits, budget)
            for i, out in zip(chunk, outputs):
                results[i] = out
            done.update(work)
    return [out[0] for out in results] if flat else results


def _check_groups(model: Model, groups: Sequence[Sequence[Run]]) -> None:
    for group in groups:
        if not group:
            raise TvLensError("empty group of runs: every group needs at least one sequence")
        for r in group:
            _check_run(model, r.tokens, r.interventions)


def _check_run(model: Model, tokens: Sequence[int], interventions: Sequence[Intervention]) -> None:
    """Refuse an empty sequence, or interventions the model or the sequence cannot take."""
    if not tokens:
        raise TvLensError("empty token sequence: every prompt needs at least one token")
    for iv in interventions:
        check_intervention(model, iv)
        if isinstance(iv.positions, tuple) and not all(-len(tokens) <= p < len(tokens) for p in iv.positions):
            raise TvLensError(f"intervention positions {iv.positions} fall outside a run of {len(tokens)} tokens: "
                              f"give indices from {-len(tokens)} to {len(tokens) - 1}")


def _shared_prefix_len(group: Sequence[Run]) -> int:
    """Tokens every run of the group starts with, leaving each run at least one token of its own
    (none when a run edits more than its last token)."""
    if len(group) < 2 or not all(r.reuses_prefix for r in group):
        return 0
    first = group[0].tokens
    n = min(len(r.tokens) for r in group) - 1
    for r in group[1:]:
        k = 0
        while k < n and r.tokens[k] == first[k]:
            k += 1
        n = k
    return n


def _chunks(order: list[int], groups, prefix_lens: list[int], budget: Budget, limit: int | None):
    """Consecutive groups (at least one at a time) whose padded passes fit the budget and, each run
    padded to the chunk's longest prefix and suffix, the model's token `limit`."""
    chunk: list[int] = []
    for i in order:
        if chunk and _over_budget(chunk + [i], groups, prefix_lens, budget, limit):
            yield chunk
            chunk = []
        chunk.append(i)
    if chunk:
        yield chunk


@dataclass(frozen=True)
class _ChunkShape:
    """The padded passes of a chunk: its prefixes (one row per group), then every run's suffix."""

    rows: int
    prefix_tokens: int
    suffix_width: int
    run_width: int
    padded_width: int

    @classmethod
    def of(cls, chunk: list[int], groups, prefix_lens: list[int]) -> _ChunkShape:
        runs = [(i, r) for i in chunk for r in groups[i]]
        longest_prefix = max(prefix_lens[i] for i in chunk)
        suffix_width = max(len(r.tokens) - prefix_lens[i] for i, r in runs)
        return cls(rows=len(runs), prefix_tokens=longest_prefix * len(chunk), suffix_width=suffix_width,
                   run_width=max(len(r.tokens) for _, r in runs), padded_width=longest_prefix + suffix_width)


def _over_budget(chunk: list[int], groups, prefix_lens: list[int], budget: Budget, limit: int | None) -> bool:
    """Whether the chunk's prefix pass or its runs (rows x their full padded width) exceed the budget,
    or its padded width the model's token limit (prompts that fit alone never make a batch too wide)."""
    shape = _ChunkShape.of(chunk, groups, prefix_lens)
    return (shape.rows > budget.rows or max(shape.prefix_tokens, shape.run_width * shape.rows) > budget.tokens
            or bool(limit and shape.padded_width > limit))


def _padded_work(chunk: list[int], groups, prefix_lens: list[int]) -> int:
    """The padded tokens the chunk's passes compute: its prefixes, then every run's tokens after them."""
    shape = _ChunkShape.of(chunk, groups, prefix_lens)
    return shape.prefix_tokens + shape.suffix_width * shape.rows


def left_pad(model: Model, seqs: Sequence[Sequence[int]]) -> tuple[Int[Tensor, "batch pos"], Int[Tensor, "batch pos"]]:
    """Left-padded token ids and their attention mask (1 on real tokens), on the model's device."""
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


@torch.inference_mode()
def _run_chunk(model: Model, groups, prefix_lens, names, keep_logits, budget) -> list[list[Prediction]]:
    runs = [(gi, r) for gi, g in enumerate(groups) for r in g]
    suffixes = [r.tokens[prefix_lens[gi]:] for gi, r in runs]
    check_width(model, max(prefix_lens) + max(len(s) for s in suffixes))
    cache: Cache | None = None
    prefix_mask: Tensor | None = None
    if max(prefix_lens) > 0:
        prefix_tokens, prefix_mask = left_pad(model, [g[0].tokens[:n] for g, n in zip(groups, prefix_lens)])
        _, _, cache = _forward(model, prefix_tokens, prefix_mask, keep_cache=True)
    outputs: list[Prediction] = []
    for start in range(0, len(runs), budget.rows):
        part = [runs[i][1] for i in range(start, min(start + budget.rows, len(runs)))]
        tokens, mask = left_pad(model, suffixes[start:start + len(part)])
        rows_cache = None
        if cache is not None and prefix_mask is not None:
            # indices on the CPU index tensors on any device (a model over several GPUs keeps its cache there)
            owners = torch.tensor([runs[i][0] for i in range(start, start + len(part))])
            rows_cache = copy.deepcopy(cache)
            rows_cache.batch_select_indices(owners)
            mask = torch.cat([prefix_mask[owners], mask], dim=1)
        last, store, _ = _forward(model, tokens, mask, cache=rows_cache,
                                  interventions=[r.interventions for r in part], capture=names)
        outputs += _predictions(last, store, names, part, keep_logits)
    by_group: list[list[Prediction]] = [[] for _ in groups]
    for (gi, _), out in zip(runs, outputs):
        by_group[gi].append(out)
    return by_group


def _predictions(last: Float[Tensor, "batch d_vocab"], store: dict[str, Tensor], names: list[str],
                 runs: Sequence[Run], keep_logits: bool) -> list[Prediction]:
    top = last.argmax(-1).tolist()
    captured = {n: store[n].cpu() for n in names}
    probs = last.float().softmax(-1) if any(r.targets for r in runs) else None
    return [
        Prediction(token=top[i], logits=last[i].cpu() if keep_logits else None,
                   captured={n: captured[n][i] for n in names},
                   target_probs=probs[i, list(r.targets)].cpu() if probs is not None and r.targets else None)
        for i, r in enumerate(runs)
    ]


@overload
def _forward(model: Model, tokens: Int[Tensor, "batch pos"], mask: Int[Tensor, "batch all_pos"], *,
             cache: Cache | None = None, interventions: Sequence[Sequence[Intervention]] = (),
             capture: Sequence[str] = (), keep_cache: Literal[True]
             ) -> tuple[Float[Tensor, "batch d_vocab"], dict[str, Tensor], Cache]: ...
@overload
def _forward(model: Model, tokens: Int[Tensor, "batch pos"], mask: Int[Tensor, "batch all_pos"], *,
             cache: Cache | None = None, interventions: Sequence[Sequence[Intervention]] = (),
             capture: Sequence[str] = (), keep_cache: Literal[False] = False
             ) -> tuple[Float[Tensor, "batch d_vocab"], dict[str, Tensor], None]: ...
def _forward(
    model: Model,
    tokens: Int[Tensor, "batch pos"],
    mask: Int[Tensor, "batch all_pos"],
    *,
    cache: Cache | None = None,
    interventions: Sequence[Sequence[Intervention]] = (),
    capture: Sequence[str] = (),
    keep_cache: bool = False,
) -> tuple[Float[Tensor, "batch d_vocab"], dict[str, Tensor], Cache | None]:
    """The one forward pass: `tokens` after `cache` (None: from scratch) under `mask` (cached and
    new positions), with each row's interventions and last-position captures; returns the
    last-position logits, the captures and (with `keep_cache` or a cache given) the cache."""
    threads.adapt()
    tokens = tokens.to(mask.device)  # next tokens come from the unembedding's device, maybe not the embedding's
    own_mask = mask[:, -tokens.shape[1]:]
    fwd_hooks = []
    if any(interventions):
        fwd_hooks += batch_hooks(interventions, own_mask.bool(), query_positions(model, tokens, own_mask))
    store: dict[str, Tensor] = {}
    fwd_hooks += hooks.capture_hooks(capture, store, index=-1)
    extra: dict[str, object] = {"return_type": "logits_and_cache"} if keep_cache else {}
    extra["use_cache"] = keep_cache or cache is not None
    if cache is not None:
        extra[guard.cache_keyword(model)] = cache
    with guard.running(model), hooks.hooked(model, fwd_hooks):
        out = model(tokens, attention_mask=mask, logits_to_keep=1, **extra)
    logits, new_cache = out if keep_cache else (out, None)
    _check_cache(new_cache if keep_cache else cache, mask.shape[1])
    for count in _COUNTS.get():
        count.forwards += 1
        count.logit_rows += tokens.shape[0]
        count.tokens += int(own_mask.sum())
        count.padded_tokens += tokens.numel()
    if torch.isnan(logits).any():
        raise NaNActivationsError("NaN in the model's activations: load the model in float32 (dtype=torch.float32) "
                                  "and patch in only finite vectors")
    return logits[:, -1], store, new_cache


def _check_cache(cache: Cache | None, width: int) -> None:
    """Refuse a key/value cache that does not hold every position of the pass (a model whose attention
    ignores the cache would otherwise continue from nothing, silently wrong)."""
    if cache is not None and cache.get_seq_length() != width:
        raise guard.UnsupportedModelError(
            f"this model's key/value cache holds {cache.get_seq_length()} of {width} positions after a forward "
            "pass, so cached prefixes and generation would be wrong: pass reuse_prefix=False where a function "
            "takes it (generation cannot do without the cache)")


@dataclass
class Decoding:
    """A batch being decoded: its key/value cache, attention mask and last-position logits."""

    cache: Cache
    mask: Int[Tensor, "batch pos"]
    logits: Float[Tensor, "batch d_vocab"]

    def select(self, rows: Sequence[int]) -> Decoding:
        """The same state for the given rows only (the cache is narrowed in place)."""
        keep = torch.tensor(list(rows))  # on the CPU: indexes the mask, logits and cache on any device
        if len(rows) < self.mask.shape[0]:
            self.cache.batch_select_indices(keep)
        return Decoding(self.cache, self.mask[keep], self.logits[keep])


@torch.inference_mode()
def prefill(
    model: Model,
    prompts: Sequence[Sequence[int]],
    interventions: Sequence[Sequence[Intervention]] = (),
    *,
    room: int = 0,
) -> Decoding:
    """Run left-padded `prompts` (each with its interventions) once, keeping the cache for `step`;
    `room` is the number of tokens to be generated after them (checked against `token_limit`)."""
    guard.check_model(model)
    for row, prompt in enumerate(prompts):
        _check_run(model, prompt, interventions[row] if interventions else ())
    tokens, mask = left_pad(model, prompts)
    check_width(model, tokens.shape[1] + room)
    logits, _, cache = _forward(model, tokens, mask, interventions=interventions, keep_cache=True)
    return Decoding(cache, mask, logits)


@torch.inference_mode()
def step(
    model: Model,
    state: Decoding,
    tokens: Int[Tensor, " batch"],
    interventions: Sequence[Sequence[Intervention]] = (),
) -> Decoding:
    """Feed one new token per row through the cache; each row's interventions edit that token."""
    mask = torch.cat([state.mask, torch.ones_like(state.mask[:, :1])], dim=1)
    at_token = [[replace(iv, positions="last") for iv in row] for row in interventions]
    logits, _, cache = _forward(model, tokens[:, None], mask, cache=state.cache, interventions=at_token,
                                keep_cache=True)
    return Decoding(cache, mask, logits)
