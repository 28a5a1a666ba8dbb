"""Accuracies with Wilson 95% confidence intervals."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Accuracy:
    """`correct` out of `total`, with the Wilson score interval at 95%."""

    correct: int
    total: int

    @classmethod
    def of(cls, hits: Iterable[bool]) -> Accuracy:
        hits = list(hits)
        return cls(sum(map(bool, hits)), len(hits))

    @property
    def value(self) -> float:
        return self.correct / self.total if self.total else float("nan")

    @property
    def ci(self) -> tuple[float, float]:
        return wilson_interval(self.correct, self.total)

    def to_dict(self) -> dict:
        low, high = self.ci
        return {"correct": self.correct, "total": self.total, "value": self.value,
                "ci_low": low, "ci_high": high}

    def __str__(self) -> str:
        low, high = self.ci
        return f"{self.value:.2f} [{low:.2f}, {high:.2f}]"


def wilson_interval(correct: int, total: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion; (nan, nan) when there are no trials."""
    if total == 0:
        return float("nan"), float("nan")
    p = correct / total
    denom = 1 + z * z / total
    centre = (p + z * z / (2 * total)) / denom
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)
