"""Task-level θ: one vector per task, the mean of θ over K demonstration contexts, its layer chosen
by a dev sweep. The paper learns one θ per test item; a task-level θ is learned once and reused for
every query (an extension: see benchmarks/task_level.py for how the two compare)."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import asdict

import torch
from jaxtyping import Float
from torch import Tensor

from tv_lens.errors import TvLensError
from tv_lens.models.bridge import Model
from tv_lens.models.provenance import model_provenance, versions
from tv_lens.patching.engine import Budget, token_limit
from tv_lens.patching.guard import check_model
from tv_lens.patching.interventions import check_layer
from tv_lens.progress import stage
from tv_lens.settings import PAPER, Settings
from tv_lens.task_vectors.learning import learn_items
from tv_lens.task_vectors.sweep import best_layer, layer_sweep
from tv_lens.task_vectors.vector import TaskVector
from tv_lens.tasks import Item, Task, get_scorer, sample_contexts, sample_items
from tv_lens.tasks.prompts import PromptFormat, prompt_ready


def learn_task(
    model: Model,
    task: Task,
    *,
    k: int = 16,
    seed: int = 0,
    settings: Settings = PAPER,
    layer: int | None = None,
    dev: Sequence[Item] | None = None,
    exclude: Collection[str] = (),
    single_token_filter: bool | None = None,
    fmt: PromptFormat | None = None,
    budget: Budget | None = None,
    **sizes: int,
) -> TaskVector:
    """Learn one θ for a whole task: the mean of θ over `k` random demonstration contexts.

    An extension of the paper, which learns one θ per test item: a task-level θ is learned once and reused
    for every query. The task is filtered for the model's tokenizer first, as `evaluate` does; each context
    has `n_shots` demonstrations and `n_dummies` dummy queries (sizes from `settings`). Without `layer`, the
    layer is the first best of a sweep over `n_dev` dev queries.

    Args:
        model: a `TransformerBridge` in compatibility mode (`load_model`).
        task: the task (`get_task`, `load_task`).
        k: how many contexts are averaged.
        seed: the seed of the contexts; the dev queries are drawn with `seed + 1`.
        settings: the protocol's sizes; default the paper's (`Settings()`).
        layer: the vector's layer; None chooses it by the dev sweep (recorded in `dev_accuracy`).
        dev: the dev items of the sweep, instead of `n_dev` sampled bare queries.
        exclude: inputs that never appear in a context or a sampled dev query (hold out test queries).
        single_token_filter: override the task's filter setting; None keeps it.
        fmt: the prompt format; default the one the filter chose for the model (`PromptFormat.for_task`).
        budget: tokens and rows per forward pass (`tv_lens.patching.engine.Budget`).
        **sizes: sizes of `settings` to change, by name (e.g. `n_shots=4`).

    Returns:
        A `TaskVector` [n_layers, d_model] with `n_contexts = k`, its layer and its provenance.

    Raises:
        TvLensError: `k` below 1; a size below 1, or more than the task can supply; a layer out of range; no
            dev item; a task the filter cannot read (see `Task.filtered`).
        TvLensTypeError: an unknown size in `**sizes`.
        UnsupportedModelError: `model` is not a `TransformerBridge` in compatibility mode and eval mode.
    """
    check_model(model)
    settings = settings.but(**sizes)
    if k < 1:
        raise TvLensError(f"k (the number of contexts) must be at least 1, got {k}")
    kept = task.filtered(model.tokenizer, single_token_filter)
    fmt = fmt or PromptFormat.for_task(kept)
    kept = prompt_ready(kept, fmt, model.tokenizer, token_limit(model), settings.n_shots)
    contexts = sample_contexts(kept, k, seed, n_shots=settings.n_shots, n_dummies=settings.n_dummies, exclude=exclude)
    with stage(f"θ of {k} contexts"):
        thetas, _ = learn_items(model, contexts, fmt, budget=budget)
    vectors = torch.stack(thetas).mean(0)
    dev_accuracy: list[float] = []
    if layer is None:
        dev = dev if dev is not None else sample_items(kept, settings.n_dev, seed + 1, n_shots=0, n_dummies=0,
                                                       exclude=exclude, allow_repeats=True)
        layer, dev_accuracy = choose_layer(model, kept, vectors, dev, fmt, budget=budget)
    else:
        check_layer(model, layer)
    info = model_provenance(model)
    return TaskVector(
        vectors=vectors, layer=layer, model=info["model"], fingerprint=info["fingerprint"],
        prompt_format=asdict(fmt), n_shots=settings.n_shots, n_contexts=k, seed=seed, task=task.name,
        versions=versions(), dev_accuracy=dev_accuracy,
    )


def choose_layer(
    model: Model,
    task: Task,
    vectors: Float[Tensor, "n_layers d_model"],
    dev: Sequence[Item],
    fmt: PromptFormat,
    *,
    budget: Budget | None = None,
) -> tuple[int, list[float]]:
    """The first layer with the best dev accuracy when `vectors` is patched into every dev query,
    and the accuracy at each layer."""
    if not dev:
        raise TvLensError("choosing a layer needs at least one dev item: raise n_dev or pass layer=L")
    scorer = get_scorer(task.scoring)
    with stage("layer sweep on dev items"):
        by_layer, _ = layer_sweep(model, [fmt.zero_shot_prompt(i) for i in dev], [vectors] * len(dev),
                                  lambda i, p: scorer(p, dev[i].answers), budget=budget)
    values = [a.value for a in by_layer]
    return best_layer(values), values

