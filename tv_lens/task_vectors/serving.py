"""Serving a stored task vector: answer queries with no demonstrations in the prompt."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

from tv_lens.models.bridge import Model
from tv_lens.patching.engine import Budget
from tv_lens.patching.guard import check_model
from tv_lens.patching.interventions import Mode, Positions
from tv_lens.task_vectors.applying import Vector, apply, as_interventions, prompt_format
from tv_lens.task_vectors.generation import generate
from tv_lens.task_vectors.queries import QueryTooLongError
from tv_lens.task_vectors.vector import TaskVector, model_to_load


class TaskVectorSolver:
    """A model plus a task vector: `solver(queries)` gives the first-token answers (the paper's
    protocol), `solver.generate(queries)` whole answers up to the first newline; queries passed
    together run in batches sized by `budget`.

    `vector` is a `TaskVector` placed by `layer`, `mode`, `strength` and `positions` (as in
    `TaskVector.intervention`), or interventions of your own.
    """

    def __init__(self, model: Model, vector: Vector, layer: int | None = None, *, mode: Mode | None = None,
                 strength: float = 1.0, positions: Positions = "last", allow_transfer: bool = False,
                 budget: Budget | None = None) -> None:
        check_model(model)
        self.model = model
        self.vector = vector
        self.interventions = as_interventions(model, vector, layer, mode=mode, strength=strength,
                                              positions=positions, allow_transfer=allow_transfer)
        self.fmt = prompt_format(vector)
        self.budget = budget

    @classmethod
    def from_file(cls, path: str | os.PathLike, model: Model | None = None, layer: int | None = None, *,
                  mode: Mode | None = None, strength: float = 1.0, positions: Positions = "last",
                  allow_transfer: bool = False, budget: Budget | None = None) -> TaskVectorSolver:
        """A solver for the vector saved at `path`, on `model` (default: load the vector's own model),
        placed as in `__init__`."""
        from tv_lens.models.loading import load_model

        theta = TaskVector.load(path)
        if model is None:
            model = load_model(model_to_load(theta, path))
        return cls(model, theta, layer, mode=mode, strength=strength, positions=positions,
                   allow_transfer=allow_transfer, budget=budget)

    def __call__(self, queries: Sequence[str]) -> list[str]:
        """The stripped first-token answer to each query."""
        return _stripped(lambda: apply(self.model, self.interventions, queries, fmt=self.fmt, budget=self.budget))

    def generate(self, queries: Sequence[str], max_new_tokens: int = 16, patch_generated: bool = False) -> list[str]:
        """The stripped greedy answer to each query, up to the first newline (with `patch_generated`,
        the vector is written into every generated token as well)."""
        return _stripped(lambda: generate(self.model, self.interventions, queries, max_new_tokens=max_new_tokens,
                                          positions="generated" if patch_generated else "last", fmt=self.fmt,
                                          budget=self.budget))


def _stripped(answer: Callable[[], list[str]]) -> list[str]:
    """The answers stripped of surrounding whitespace (also those a `QueryTooLongError` carries)."""
    try:
        return [a.strip() for a in answer()]
    except QueryTooLongError as err:
        err.answers = [None if a is None else a.strip() for a in err.answers]
        raise
