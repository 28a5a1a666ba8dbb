"""Accuracies with Wilson 95% confidence intervals."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import ClassVar

from tv_lens.codec import Fraction, Record
from tv_lens.errors import TvLensError


@dataclass(frozen=True)
class Accuracy(Record):
    """An accuracy, `correct` out of `total`, with its Wilson score interval at 95%.

    `str(accuracy)` reads `0.84 [0.71, 0.92]`. Stored as the counts with the value and interval beside them.

    Attributes:
        correct: the items right.
        total: the items scored.

    Raises:
        TvLensError: `correct` below 0 or above `total`.
    """

    correct: int
    total: int
    DERIVED: ClassVar[dict] = {"value": Fraction, "ci_low": Fraction, "ci_high": Fraction}

    def __post_init__(self) -> None:
        if not 0 <= self.correct <= self.total:
            raise TvLensError(f"{self.correct} correct out of {self.total} is impossible: give 0 <= correct <= total")

    @classmethod
    def of(cls, hits: Iterable[bool]) -> Accuracy:
        """The accuracy of a series of hits.

        Args:
            hits: whether each item was right.

        Returns:
            The accuracy, counting the truthy hits.
        """
        hits = list(hits)
        return cls(sum(map(bool, hits)), len(hits))

    @property
    def value(self) -> float:
        """`correct / total`; NaN when there are no items."""
        return self.correct / self.total if self.total else float("nan")

    @property
    def ci(self) -> tuple[float, float]:
        """The Wilson score interval at 95%, (low, high); (NaN, NaN) when there are no items."""
        return wilson_interval(self.correct, self.total)

    @property
    def ci_low(self) -> float:
        """The interval's lower bound."""
        return self.ci[0]

    @property
    def ci_high(self) -> float:
        """The interval's upper bound."""
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
