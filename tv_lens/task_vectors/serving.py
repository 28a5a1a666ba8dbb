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
    """Serve a task vector: answer queries with no demonstrations in the prompt.

    `solver(queries)` gives the stripped first-token answers (the paper's protocol), `solver.generate(queries)`
    whole greedy answers up to the first newline. The vector is placed and checked once, when the solver is
    made; queries passed together run in batches sized by `budget`.

    Args:
        model: a `TransformerBridge` in compatibility mode (`load_model`).
        vector: a `TaskVector` or `FunctionVector` placed by `layer`, `mode`, `strength` and `positions`
            (as in `apply`), or interventions of your own.
        layer: where a `TaskVector` is written; default its own `layer`.
        mode: "replace", "add" or "scale"; default the vector kind's.
        strength: the multiple of the vector for "add", the factor for "scale".
        positions: "last", "all" or a tuple of token indices.
        allow_transfer: accept a vector learned on another model of the same `d_model`.
        budget: tokens and rows per forward pass (`tv_lens.patching.engine.Budget`).

    Attributes:
        model: the model.
        vector: the vector, as given.
        interventions: the vector placed as interventions, written into every query.
        fmt: the prompt format of the queries: the vector's own, else `PromptFormat()`.
        budget: the budget, as given.

    Raises:
        TvLensError: a vector learned on another model; no `layer` where the vector has none; a layer, hook or
            head the model lacks.
        TvLensTypeError: placement arguments with interventions of your own, or a `vector` of another type.
        UnsupportedModelError: `model` is not a `TransformerBridge` in compatibility mode and eval mode.

    Example:
        ```python
        solver = tv.TaskVectorSolver.from_file("antonyms.safetensors")
        solver(["hot", "up"])
        ```
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
        """A solver for a vector saved with `TaskVector.save`.

        Args:
            path: the vector file.
            model: the model to run; default the model the vector names, loaded, when it is an embedded or
                tiny model (a hub id or path is loaded only when you load it yourself).
            layer: where the vector is written; default its own `layer`.
            mode: "replace", "add" or "scale"; default the vector kind's.
            strength: the multiple of the vector for "add", the factor for "scale".
            positions: "last", "all" or a tuple of token indices.
            allow_transfer: accept a vector learned on another model of the same `d_model`.
            budget: tokens and rows per forward pass (`tv_lens.patching.engine.Budget`).

        Returns:
            The solver.

        Raises:
            VectorFileError: a missing, damaged, foreign or too-new file.
            TvLensError: no `model` and the vector names none tv_lens may load by itself; a vector learned on
                another model than `model`.
        """
        from tv_lens.models.loading import load_model

        theta = TaskVector.load(path)
        if model is None:
            model = load_model(model_to_load(theta, path))
        return cls(model, theta, layer, mode=mode, strength=strength, positions=positions,
                   allow_transfer=allow_transfer, budget=budget)

    def __call__(self, queries: Sequence[str]) -> list[str]:
        """Answer queries: the greedy next token of each with the vector written in, stripped.

        Args:
            queries: the inputs to answer (a list, not one string).

        Returns:
            The answer to each query, in order.

        Raises:
            QueryTooLongError: some queries exceed the model's token limit; raised after the others are
                answered, with every (stripped) answer in its `answers`.
        """
        return _stripped(lambda: apply(self.model, self.interventions, queries, fmt=self.fmt, budget=self.budget))

    def generate(self, queries: Sequence[str], max_new_tokens: int = 16, patch_generated: bool = False) -> list[str]:
        """Generate whole answers: the greedy text after each query, up to the first newline, stripped.

        Args:
            queries: the inputs to answer (a list, not one string).
            max_new_tokens: the most tokens generated per query.
            patch_generated: write the vector into every generated token as well, not only the prompt's last.

        Returns:
            The answer to each query, in order.

        Raises:
            QueryTooLongError: some prompts plus `max_new_tokens` exceed the model's token limit; raised after
                the others are answered, with every (stripped) answer in its `answers`.
        """
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
