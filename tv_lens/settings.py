"""The protocol's sizes in one place: `evaluate`, `learn_task` and the analyses built on them take
how many demonstrations, dummy queries and queries to sample from one `Settings`."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace


@dataclass(frozen=True)
class Settings:
    """The paper's sizes by default (PAPER.md): demonstrations per prompt, dummy queries per θ, bare
    queries for the zero-shot baseline, dev queries for the layer sweep, test queries."""

    n_shots: int = 5
    n_dummies: int = 2
    n_baseline: int = 100
    n_dev: int = 50
    n_test: int = 50

    def but(self, **sizes: int) -> Settings:
        """These settings with some sizes changed (e.g. `but(n_test=10)`); a one-line error for an unknown size."""
        unknown = set(sizes) - {f.name for f in fields(self)}
        if unknown:
            raise TypeError(f"unknown protocol size(s) {', '.join(sorted(unknown))}: "
                            f"the sizes are {', '.join(f.name for f in fields(self))}")
        return replace(self, **sizes)


PAPER = Settings()
