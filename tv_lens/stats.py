"""Accuracies with Wilson 95% confidence intervals."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import ClassVar

from tv_lens.codec import Fraction, Record


@dataclass(frozen=True)
class Accuracy(Record):
    """`correct` out of `total`, with the Wilson score interval at 95% (stored beside the counts)."""

    correct: int
    total: int
    DERIVED: ClassVar[dict] = {"value": Fraction, "ci_low": Fraction, "ci_high": Fraction}

    def __post_init__(self) -> None:
        if not 0 <= self.correct <= self.total:
            raise ValueError(f"{self.correct} correct out of {self.total} is impossible")

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

    @property
    def ci_low(self) -> float:
        return self.ci[0]

    @property
    def ci_high(self) -> float:
        return self.ci[1]

    def __str__(self) -> str:
        return f"{self.value:.2f} [{self.ci_low:.2f}, {self.ci_high:.2f}]"


def wilson_interval(correct: int, total: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion; (nan, nan) when there are no trials."""
    if total == 0:
        return float("nan"), float("nan")
    p = correct / total
    denom = 1 + z * z / total
    centre = (p + z * z / (2 * total)) / denom
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)
