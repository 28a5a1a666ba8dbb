"""Serving a stored task vector: answer queries with no demonstrations in the prompt."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

from tv_lens.apply import apply, check_compatible
from tv_lens.generate import generate
from tv_lens.prompts import PromptFormat
from tv_lens.runner import Budget
from tv_lens.vectors import TaskVector


@dataclass
class TaskVectorSolver:
    """A model plus a task vector: `solver(queries)` gives the first-token answers (the paper's
    protocol), `solver.generate(queries)` whole answers up to the first newline; queries passed
    together run in batches sized by `budget`."""

    model: object
    theta: TaskVector
    layer: int | None = None
    mode: str = "replace"
    alpha: float = 1.0
    positions: str = "last"
    allow_transfer: bool = False
    budget: Budget | None = None

    def __post_init__(self) -> None:
        check_compatible(self.model, self.theta, self.allow_transfer)
        self.layer = self.theta.layer if self.layer is None else self.layer
        self.theta.at(self.layer)

    @classmethod
    def from_file(cls, path: str | os.PathLike, model=None, **settings) -> TaskVectorSolver:
        """A solver for the vector saved at `path`, on `model` (default: load the vector's own model)."""
        from tv_lens.models import load_model

        theta = TaskVector.load(path)
        if model is None:
            if not theta.model:
                raise ValueError(f"{path} does not name its model: pass model=load_model(...)")
            model = load_model(theta.model)
        return cls(model, theta, **settings)

    @property
    def fmt(self) -> PromptFormat:
        return PromptFormat(**self.theta.prompt_format)

    def __call__(self, queries: Sequence[str]) -> list[str]:
        """The stripped first-token answer to each query."""
        predictions = apply(self.model, self.theta, list(queries), layer=self.layer, mode=self.mode,
                            alpha=self.alpha, positions=self.positions, fmt=self.fmt,
                            allow_transfer=self.allow_transfer, budget=self.budget)
        return [p.strip() for p in predictions]

    def generate(self, queries: Sequence[str], max_new_tokens: int = 16, patch_generated: bool = False) -> list[str]:
        """The stripped greedy answer to each query, up to the first newline."""
        texts = generate(self.model, self.theta, list(queries), max_new_tokens=max_new_tokens,
                         layer=self.layer, mode=self.mode, alpha=self.alpha, positions=self.positions,
                         patch_generated=patch_generated, fmt=self.fmt, allow_transfer=self.allow_transfer,
                         budget=self.budget)
        return [t.strip() for t in texts]
