"""The protocol's sizes in one place: `evaluate`, `learn_task` and the analyses built on them take
how many demonstrations, dummy queries and queries to sample from one `Settings`; an analysis's own
settings hold a `Settings` and add only the sizes of its own. Every size is checked when the settings
are made (a whole number, at least 1), so a bad one fails in one line before any model loads."""

from __future__ import annotations

from dataclasses import Field, dataclass, fields, replace
from typing import Any, ClassVar

from tv_lens.errors import TvLensError, TvLensTypeError


def check_size(name: str, value: object, minimum: int = 1) -> int:
    """`value` if it is a whole number of at least `minimum`, else a one-line TvLensError naming `name`."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TvLensError(f"{name} must be a whole number, got {value!r}")
    if value < minimum:
        raise TvLensError(f"{name} must be at least {minimum}, got {value}")
    return value


def check_sizes(settings: object, names: list[str]) -> None:
    """Check each named size of `settings` with `check_size`."""
    for name in names:
        check_size(name, getattr(settings, name))


@dataclass(frozen=True)
class Settings:
    """The protocol's sizes, the paper's by default (Hendel et al. 2023), for `evaluate` and `learn_task`.

    Each size is checked when the settings are made, so a bad one fails before any model loads.

    Attributes:
        n_shots: demonstrations per prompt.
        n_dummies: dummy queries θ is averaged over.
        n_baseline: bare queries of the zero-shot baseline.
        n_dev: dev queries of the layer sweep.
        n_test: test queries.

    Raises:
        TvLensError: a size that is not a whole number of at least 1.
    """

    n_shots: int = 5
    n_dummies: int = 2
    n_baseline: int = 100
    n_dev: int = 50
    n_test: int = 50

    def __post_init__(self) -> None:
        check_sizes(self, [f.name for f in fields(self)])

    def but(self, **sizes: int) -> Settings:
        """These settings with some sizes changed.

        Args:
            **sizes: the sizes to change, by name (e.g. `n_test=10`).

        Returns:
            New settings.

        Raises:
            TvLensTypeError: an unknown size.
            TvLensError: a size that is not a whole number of at least 1.
        """
        unknown = set(sizes) - {f.name for f in fields(self)}
        if unknown:
            raise TvLensTypeError(f"unknown protocol size(s) {', '.join(sorted(unknown))}: "
                                  f"the sizes are {', '.join(f.name for f in fields(self))}")
        return replace(self, **sizes)


PAPER = Settings()
PAPER_4_SHOTS = PAPER.but(n_shots=4)
"""The sizes of the paper's conflicting-task and clustering experiments: 4 demonstrations per prompt."""
FV_PAPER = PAPER.but(n_shots=10)
"""The function-vector paper's sizes (Todd et al. 2024): 10 demonstrations per prompt, 50 dev and 50 test queries."""
FV_CLEAN, FV_CORRUPTED, FV_HEADS = 100, 25, 10
"""The function-vector paper's own sizes: clean prompts averaged for ā, shuffled-label prompts for the
AIE, heads summed into the function vector."""


class AnalysisSettings:
    """Base of an analysis's settings, a frozen dataclass whose field `sizes` is the protocol's
    `Settings` it samples with (of which it uses the sizes named in `USES`), its other fields its own."""

    USES: ClassVar[tuple[str, ...]]
    sizes: Settings
    __dataclass_fields__: ClassVar[dict[str, Field[Any]]]  # set by @dataclass on each subclass

    def __post_init__(self) -> None:
        if not isinstance(self.sizes, Settings):
            raise TvLensError(f"sizes must be a Settings, got {type(self.sizes).__name__}")
        check_sizes(self, [f.name for f in fields(self) if f.name != "sizes" and f.type in ("int", int)])

    def record(self) -> dict:
        """The settings written with the results and compared when a run resumes: the fields in order,
        `sizes` given as the protocol sizes used."""
        record = {}
        for f in fields(self):
            if f.name == "sizes":
                record.update({name: getattr(self.sizes, name) for name in self.USES})
            else:
                record[f.name] = getattr(self, f.name)
        return record

    def but(self, **changes) -> AnalysisSettings:
        """These settings with some changed, protocol sizes (`n_shots`, ...) and the analysis's own by
        name; a one-line error for a size it does not have or use."""
        own = {f.name for f in fields(self)} - {"sizes"}
        unknown = set(changes) - own - set(self.USES)
        if unknown:
            raise TvLensTypeError(f"{type(self).__name__} has no size {', '.join(sorted(unknown))}: "
                                  f"it uses {', '.join((*self.USES, *sorted(own)))}")
        shared = {k: v for k, v in changes.items() if k in self.USES}
        return replace(self, sizes=self.sizes.but(**shared), **{k: v for k, v in changes.items() if k in own})
