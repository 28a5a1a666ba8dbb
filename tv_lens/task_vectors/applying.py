"""Apply: f(x; θ), the bare query with θ written into the model (by default: replacing
`resid_post` at the last token, the paper's patch)."""

from __future__ import annotations

from collections.abc import Sequence

from tv_lens.errors import TvLensTypeError
from tv_lens.models.bridge import Model
from tv_lens.patching.engine import Budget, Run, decode, encode, predict
from tv_lens.patching.guard import check_model
from tv_lens.patching.interventions import Intervention, Mode, Positions, check_intervention
from tv_lens.task_vectors.queries import answer_fitting, check_queries
from tv_lens.task_vectors.vector import TaskVector, check_compatible
from tv_lens.tasks.prompts import PromptFormat

Vector = TaskVector | Intervention | Sequence[Intervention]


def apply(
    model: Model,
    vector: Vector,
    queries: Sequence[str],
    layer: int | None = None,
    *,
    mode: Mode | None = None,
    strength: float = 1.0,
    positions: Positions = "last",
    fmt: PromptFormat | None = None,
    allow_transfer: bool = False,
    budget: Budget | None = None,
) -> list[str]:
    """Answer bare queries with a vector written in: Apply(query, θ), the model's greedy next token.

    Each query is written in the vector's prompt format with no demonstrations (`example:{x}->`) and runs
    with `vector` written into the forward pass; queries run in left-padded batches sized by `budget`.

    Args:
        model: a `TransformerBridge` in compatibility mode (`load_model`).
        vector: a `TaskVector` or `FunctionVector`, placed by `layer`, `mode`, `strength` and `positions`
            (as `TaskVector.intervention` places it); or one `Intervention`, or a list of them, applied as
            built.
        queries: the inputs to answer (a list, not one string).
        layer: where a `TaskVector` is written; default its own `layer`.
        mode: how a `TaskVector` is written: "replace" (the paper's patch), "add" (`strength` x the vector)
            or "scale" (the activation times `strength`); default the vector kind's (`default_mode`:
            "replace" for θ, "add" for a function vector).
        strength: the multiple of the vector for "add", the factor for "scale".
        positions: the tokens a `TaskVector` is written at: "last" (the paper's), "all" (every token after a
            leading BOS), or a tuple of token indices (negative ones from the end).
        fmt: the prompt format of the queries; default the vector's own, else `PromptFormat()`.
        allow_transfer: accept a vector learned on another model of the same `d_model` (another depth or
            weights fingerprint).
        budget: tokens and rows per forward pass (`tv_lens.patching.engine.Budget`); default 4096 tokens and
            128 rows.

    Returns:
        The decoded next token of each query, in order, not stripped (e.g. `" cold"`).

    Raises:
        QueryTooLongError: some queries exceed the model's token limit; raised after the others are
            answered, with every answer in its `answers` (None for the long ones).
        TvLensTypeError: `queries` is one string; `layer`, `mode`, `strength` or `positions` with interventions
            of your own; a `vector` of another type.
        TvLensError: a vector learned on another model (or of another `d_model`); no `layer` where the vector
            has none; a layer, hook or head the model lacks; an empty query.
        PromptTextError: a query the prompt format cannot hold.
        UnsupportedModelError: `model` is not a `TransformerBridge` in compatibility mode and eval mode.
    """
    check_model(model)
    fmt = prompt_format(vector, fmt)
    queries = check_queries(queries, fmt)
    edits = as_interventions(model, vector, layer, mode=mode, strength=strength, positions=positions,
                             allow_transfer=allow_transfer)
    prompts = encode(model, [fmt.query(q) for q in queries])
    return answer_fitting(model, queries, prompts, 0,
                          lambda fitting: decode(model, next_tokens(model, [prompts[i] for i in fitting],
                                                                    [edits] * len(fitting), budget=budget)))


def next_tokens(
    model: Model,
    prompts: Sequence[Sequence[int]],
    interventions: Sequence[Sequence[Intervention]],
    *,
    budget: Budget | None = None,
) -> list[int]:
    """Greedy next token of each token prompt with its own interventions."""
    runs = [Run(p, tuple(edits)) for p, edits in zip(prompts, interventions)]
    return [p.token for p in predict(model, runs, budget=budget)]


def as_interventions(model: Model, vector: Vector, layer: int | None = None, *, mode: Mode | None = None,
                     strength: float = 1.0, positions: Positions = "last",
                     allow_transfer: bool = False) -> tuple[Intervention, ...]:
    """`vector` as checked interventions: a `TaskVector` placed by `layer`, `mode`, `strength` and
    `positions` (refused if learned on another model, unless `allow_transfer`), or the given interventions."""
    edits: tuple[Intervention, ...]
    if isinstance(vector, TaskVector):
        check_compatible(model, vector, allow_transfer)
        edits = (vector.intervention(layer, mode=mode, strength=strength, positions=positions),)
    elif (layer, mode, strength, positions) != (None, None, 1.0, "last"):
        raise TvLensTypeError("layer, mode, strength and positions place a TaskVector; give them to your Intervention")
    elif isinstance(vector, Intervention):
        edits = (vector,)
    elif isinstance(vector, Sequence) and all(isinstance(edit, Intervention) for edit in vector):
        edits = tuple(vector)
    else:
        raise TvLensTypeError(f"the vector must be a TaskVector, an Intervention or a list of them, got "
                              f"{type(vector).__name__}: wrap a tensor as TaskVector(vectors=...) "
                              f"([n_layers, d_model]) or Intervention(layer=L, value=...) ([d_model])")
    for edit in edits:
        check_intervention(model, edit)
    return edits


def prompt_format(vector: Vector | None, fmt: PromptFormat | None = None) -> PromptFormat:
    """`fmt` if given, else the task vector's own prompt format, else the default."""
    if fmt is not None:
        return fmt
    if isinstance(vector, TaskVector) and vector.prompt_format:
        return PromptFormat(**vector.prompt_format)
    return PromptFormat()
