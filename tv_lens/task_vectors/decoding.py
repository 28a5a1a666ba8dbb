"""How generation chooses each next token: greedy (temperature 0) or sampled with temperature, top-k and
top-p, from a `torch.Generator` per row (never torch's global generator), so a row's tokens depend
only on its logits and its seed, not on the batch it runs in."""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from jaxtyping import Float, Int
from torch import Tensor

from tv_lens.errors import TvLensError, TvLensTypeError


@dataclass(frozen=True)
class Sampling:
    """`temperature` 0 is greedy (the others then unused); above 0, the next token is drawn from
    softmax(logits / temperature) restricted to the `top_k` most likely tokens (0: all) and to the
    smallest set whose probability reaches `top_p` (1: all), in that order."""

    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.temperature, bool) or not (isinstance(self.temperature, (int, float))
                                                      and math.isfinite(self.temperature) and self.temperature >= 0):
            raise TvLensError(f"temperature must be a number >= 0 (0 is greedy), got {self.temperature!r}")
        if isinstance(self.top_p, bool) or not (isinstance(self.top_p, (int, float)) and 0 < self.top_p <= 1):
            raise TvLensError(f"top_p must be in (0, 1] (1 keeps every token), got {self.top_p!r}")
        if isinstance(self.top_k, bool) or not (isinstance(self.top_k, int) and self.top_k >= 0):
            raise TvLensError(f"top_k must be an integer >= 0 (0 keeps every token), got {self.top_k!r}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0

    def probabilities(self, logits: Float[Tensor, "batch d_vocab"]) -> Float[Tensor, "batch d_vocab"]:
        """The distribution each row's next token is drawn from (float32, on the CPU)."""
        scores = logits.detach().float().cpu() / self.temperature
        if self.top_k and self.top_k < scores.shape[-1]:
            kth = scores.topk(self.top_k, dim=-1).values[:, -1:]
            scores = scores.masked_fill(scores < kth, -math.inf)
        probs = scores.softmax(-1)
        if self.top_p < 1:
            ordered, order = probs.sort(dim=-1, descending=True, stable=True)
            before = ordered.cumsum(-1) - ordered  # probability of the more likely tokens
            ordered = ordered.masked_fill(before >= self.top_p, 0.0)  # the most likely token always stays
            probs = torch.zeros_like(probs).scatter(-1, order, ordered)
            probs = probs / probs.sum(-1, keepdim=True)
        return probs

    def choose(self, logits: Float[Tensor, "batch d_vocab"], generators: Sequence[torch.Generator]
               ) -> Int[Tensor, " batch"]:
        """The next token of each row: the argmax, or a draw with that row's generator."""
        if self.greedy:
            return logits.argmax(-1)
        probs = self.probabilities(logits)
        drawn = [torch.multinomial(p, 1, generator=g) for p, g in zip(probs, generators)]
        return torch.cat(drawn).to(logits.device)


def row_seed(seed: int, row: int) -> int:
    """The seed of row `row` of a call seeded with `seed` (distinct streams for distinct (seed, row))."""
    return int(hashlib.sha256(f"{seed}:{row}".encode()).hexdigest()[:15], 16)


def row_seeds(seed: int | Sequence[int] | None, n: int) -> list[int]:
    """One seed per row: `row_seed(seed, i)` for an int, the given ones for a list, fresh random ones
    (from the operating system, not torch's global generator) for None."""
    if seed is None:
        return [int.from_bytes(os.urandom(7), "little") for _ in range(n)]
    if isinstance(seed, int) and not isinstance(seed, bool):
        return [row_seed(seed, i) for i in range(n)]
    if isinstance(seed, (str, bytes)) or not isinstance(seed, Sequence):
        raise TvLensTypeError(f"seed must be an integer, a list of one integer per query, or None, not {seed!r}")
    seeds = list(seed)
    if len(seeds) != n or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds):
        raise TvLensError(f"a list of seeds needs one integer >= 0 per query ({n}), got {seeds!r}")
    return seeds


def generators(seeds: Sequence[int]) -> list[torch.Generator]:
    """A CPU `torch.Generator` per seed."""
    return [torch.Generator().manual_seed(s) for s in seeds]
