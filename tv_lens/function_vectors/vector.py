"""Function vectors (Todd et al. 2024): the sum of a set of heads' mean outputs, added to the residual
stream of a prompt without demonstrations.

Defaults are the paper's (FV.md): Q:/A: prompts with 10 demonstrations, every pair kept and the first
token of the answer scored, ā over 100 clean prompts and the AIE over 25 shuffled-label prompts on
validation queries the model answers correctly in context (`tv_lens.function_vectors.mediation`,
`tv_lens.function_vectors.items`), the universal head set (the top k = 10 heads by AIE averaged
over tasks; `heads="task"` ranks the task's own heads instead), the FV added (not written over) at
the last token of `blocks.L.hook_resid_post`, L chosen on those validation queries, accuracies on
the test queries ICL answers correctly.

k stays 10 on every model, the paper's number for its 6B model, not rescaled by the number of heads
(10 of 72 heads on gemma-3-270m, 10 of 270 on smollm2-135m): a parameter.

What a head "contributes to the residual stream" is ambiguous where the attention output is normalised
before it reaches the residual stream (Gemma 3's post-attention norm); `formulation` chooses:

- "residual" (default): each head's share of what the attention block adds to the residual stream,
  after the post-attention norm (`tv_lens.patching.heads`), averaged over the clean prompts. Without such a
  norm (Llama, GPT-J: the paper's models) this is exactly the paper's ā(l,h) through W_O.
- "out_proj": the paper's formula taken literally, ā(l,h) through W_O, before any post-attention norm
  (on Gemma this bypasses the norm and is orders of magnitude smaller than the residual stream).
- "scaled": the "residual" FV's direction rescaled, at each layer L, to the mean norm of the residual
  stream there (last token of the clean prompts): a steering-strength variant, not the paper's.

The FV is a `FunctionVector` (a `TaskVector` that is added: same file format, kind "function_vector")
whose `vectors[L]` is what is added at layer L (the same row at every layer except for "scaled"), with
the heads and the AIE they were ranked by.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor

from tv_lens.codec import Layer, PerLayer, Record
from tv_lens.errors import TvLensError
from tv_lens.function_vectors.items import FVItems, UnusableTask, answer_tokens, fv_items, task_in_format
from tv_lens.function_vectors.mediation import (
    HeadEffects,
    MeanActivations,
    UniversalHeads,
    head_effects,
    mean_activations,
    universal_heads,
)
from tv_lens.models.bridge import Model
from tv_lens.models.provenance import model_provenance, versions
from tv_lens.patching.engine import Budget, Run, encode, predict
from tv_lens.patching.guard import check_model
from tv_lens.patching.heads import head_contributions
from tv_lens.patching.interventions import Intervention, check_layer
from tv_lens.progress import stage
from tv_lens.settings import FV_CLEAN, FV_CORRUPTED, FV_HEADS, FV_PAPER
from tv_lens.stats import Accuracy
from tv_lens.task_vectors.sweep import best_layer
from tv_lens.task_vectors.vector import FunctionVector
from tv_lens.tasks import Item, Task, resolve_task
from tv_lens.tasks.builtin import BUILTIN_TASKS
from tv_lens.tasks.prompts import PromptFormat

FORMULATIONS = ("residual", "out_proj", "scaled")
RANKINGS = ("universal", "task")
UNIVERSAL_TASKS = BUILTIN_TASKS
"""The tasks whose mean AIE ranks the heads when no universal set is given: the 18 built-in tasks, whatever task
the function vector is for (the paper ranks once, over its tasks, and uses that set for every task)."""


def fv_vectors(model: Model, means: MeanActivations | HeadEffects, heads: Sequence[tuple[int, int, float]],
               formulation: str = "residual") -> Float[Tensor, "n_layers d_model"]:
    """The FV summing `heads` ((layer, head, ...) each, e.g. `effects.top_heads(10)` or a universal set's
    `heads`) of `means` (one task's) in `formulation`, as the vector to add at each layer."""
    if formulation not in FORMULATIONS:
        raise TvLensError(f"unknown FV formulation {formulation!r}: choose one of {', '.join(FORMULATIONS)}")
    if not heads:
        raise TvLensError("a function vector sums at least one head: pass heads, e.g. effects.top_heads(10)")
    parts = []
    for layer, head, *_ in heads:
        if formulation == "out_proj":
            mean_z = means.mean_z[layer].to(model.cfg.device)
            parts.append(head_contributions(model, layer, mean_z)[head].float().cpu())
        else:
            parts.append(means.mean_share[layer, head].float())
    fv = torch.stack(parts).sum(0)
    if formulation == "scaled":
        return fv / fv.norm() * means.resid_norm[:, None].float()
    return fv.expand(means.resid_norm.shape[0], -1).clone()


@dataclass(frozen=True)
class FVEvaluation(Record):
    """One FV added at each layer on dev items (zero-shot and shuffled-label prompts), the layer
    chosen on each (first best), and test accuracy there."""

    zero_shot_by_layer: PerLayer[Accuracy]
    shuffled_by_layer: PerLayer[Accuracy]
    zero_shot_layer: Layer
    shuffled_layer: Layer
    zero_shot: Accuracy
    shuffled: Accuracy


def accuracy_with(
    model: Model,
    fmt: PromptFormat,
    prompts: Sequence[str],
    items: Sequence[Item],
    edits: Mapping[str, Sequence[tuple[Intervention, ...]]],
    budget: Budget | None = None,
) -> dict[str, list[Accuracy]]:
    """For each name, the accuracy of `prompts` (one per item) under each set of interventions of its
    list, scored on the first answer token (the greedy token is the first token, after the query in
    `fmt`, of one of the item's answers). Each prompt runs as one group with every set, so its prefix
    is computed once for all of them."""
    flat = [(name, edit) for name, sets in edits.items() for edit in sets]
    groups = [[Run(tokens, edit) for _, edit in flat] for tokens in encode(model, list(prompts))]
    outputs = predict(model, groups, budget=budget)
    accepted = answer_tokens(model, fmt, items)
    accuracies: dict[str, list[Accuracy]] = {name: [] for name in edits}
    for j, (name, _) in enumerate(flat):
        accuracies[name].append(Accuracy.of(out[j].token in answers for out, answers in zip(outputs, accepted)))
    return accuracies


def added(vectors: Float[Tensor, "n_layers d_model"], layers: Sequence[int]) -> list[tuple[Intervention, ...]]:
    """The FV added at the last token of each of `layers` in turn."""
    return [(Intervention(layer, vectors[layer], mode="add"),) for layer in layers]


def evaluate_fvs(
    model: Model,
    vectors: Mapping[str, Float[Tensor, "n_layers d_model"]],
    items: FVItems,
    fmt: PromptFormat,
    controls: Mapping[str, tuple[Intervention, ...]] | None = None,
    budget: Budget | None = None,
) -> tuple[dict[str, FVEvaluation], dict[str, dict[str, Accuracy]]]:
    """Each FV added at every layer on the dev items, zero-shot and with shuffled labels, and test
    accuracy at the first best dev layer of each; also the test accuracy of each control (a set of
    interventions, e.g. none, or θ) on both kinds of prompt: {kind: {control: accuracy}}. Accuracies
    are on the first answer token (`accuracy_with`).

    All FVs and controls share each prompt's forward passes (one group per prompt)."""
    controls = {"none": (), **(controls or {})}
    layers = range(model.cfg.n_layers)
    curves, chosen, test = {}, {}, {}
    for kind, dev, test_items, prompt in (
            ("zero_shot", items.dev, items.test, fmt.zero_shot_prompt),
            ("shuffled", items.dev_shuffled, items.test_shuffled, fmt.icl_prompt)):
        with stage(f"FV layer sweep, {kind.replace('_', '-')} dev items"):
            curves[kind] = accuracy_with(model, fmt, [prompt(i) for i in dev], dev,
                                         {name: added(v, layers) for name, v in vectors.items()}, budget)
        chosen[kind] = {name: best_layer([a.value for a in curve]) for name, curve in curves[kind].items()}
        at_best = {name: added(v, [chosen[kind][name]]) for name, v in vectors.items()}
        with stage(f"FV and controls, {kind.replace('_', '-')} test items"):
            test[kind] = accuracy_with(model, fmt, [prompt(i) for i in test_items], test_items,
                                       {**at_best, **{name: [edits] for name, edits in controls.items()}}, budget)
    evaluations = {name: FVEvaluation(curves["zero_shot"][name], curves["shuffled"][name], chosen["zero_shot"][name],
                                      chosen["shuffled"][name], test["zero_shot"][name][0],
                                      test["shuffled"][name][0])
                   for name in vectors}
    return evaluations, {kind: {name: test[kind][name][0] for name in controls} for kind in test}


def function_vector(
    model: Model,
    task: Task,
    k: int | None = None,
    *,
    heads: str | UniversalHeads = "universal",
    formulation: str = "residual",
    fmt: str | PromptFormat = "qa",
    layer: int | None = None,
    effects: HeadEffects | None = None,
    seed: int = 0,
    n_shots: int = FV_PAPER.n_shots,
    n_clean: int = FV_CLEAN,
    n_corrupted: int = FV_CORRUPTED,
    n_dev: int = FV_PAPER.n_dev,
    queries: str = "icl_correct",
    single_token_filter: bool = False,
    universal_tasks: Sequence[str | Task] = UNIVERSAL_TASKS,
    budget: Budget | None = None,
) -> FunctionVector:
    """The function vector of a task (Todd et al. 2024): the mean outputs of its top heads, summed.

    Saved and applied like a task vector; `apply` adds it to the residual stream at the last token.
    Defaults are the paper's: Q:/A: prompts of 10 demonstrations, ā over 100 clean prompts, the universal
    head set of 10 heads, the layer chosen on ICL-correct validation queries.

    Args:
        model: a `TransformerBridge` in compatibility mode (`load_model`).
        task: the task.
        k: how many heads are summed; default the universal set's `k`, or 10.
        heads: how the heads are ranked: "universal" (the paper's: by the AIE averaged over
            `universal_tasks`, computed here, as long as `head_effects` on each of them; compute it once
            with `universal_heads` and pass it instead), a `UniversalHeads`, or "task" (this task's own AIE).
        formulation: what a head contributes: "residual" (its share of what the attention block adds to
            the residual stream, after any post-attention norm: the paper's ā through W_O on models without
            one), "out_proj" (ā through W_O, before any post-attention norm) or "scaled" (the "residual"
            vector rescaled at each layer to the mean norm of the residual stream there; not the paper's).
        fmt: the prompt format: "qa", "arrow" or a `PromptFormat` (as in `head_effects`).
        layer: the vector's layer; None chooses the first best of a sweep adding it to the zero-shot
            prompts of the validation items (recorded in `dev_accuracy`).
        effects: this task's `head_effects`, when computed already: reused for the ranking and ā.
        seed: the seed of the split and of every item.
        n_shots: demonstrations per prompt.
        n_clean: clean prompts ā is averaged over.
        n_corrupted: shuffled-label prompts the AIE is averaged over.
        n_dev: the most validation queries (for ā, the AIE and the layer sweep).
        queries: "icl_correct" (the paper's: validation queries the model answers correctly in context)
            or "all".
        single_token_filter: keep single-token answers only.
        universal_tasks: the tasks (names or `Task`s) whose mean AIE ranks the heads for
            `heads="universal"`; default the 18 built-in tasks. Those that cannot take part
            (`UnusableTask`) are left out.
        budget: tokens and rows per forward pass (`tv_lens.patching.engine.Budget`).

    Returns:
        A `FunctionVector` [n_layers, d_model] with its layer, the heads summed and its provenance.

    Raises:
        UnusableTask: this task cannot take part (see `head_effects`).
        TvLensError: an unknown `heads`, `formulation`, `fmt` or `queries`; a `UniversalHeads` ranked on
            another model; none of `universal_tasks` can take part; a size below 1; a layer out of range.
        UnsupportedModelError: `model` is not a `TransformerBridge` in compatibility mode and eval mode.
    """
    check_model(model)
    kept, resolved = task_in_format(model, task, fmt, n_shots=n_shots,
                                    single_token_filter=single_token_filter)
    settings: dict[str, Any] = dict(seed=seed, n_shots=n_shots, n_clean=n_clean, n_corrupted=n_corrupted,
                                    n_dev=n_dev, queries=queries, single_token_filter=single_token_filter,
                                    budget=budget)
    items = fv_items(model, kept, resolved, seed, n_shots=n_shots, n_clean=n_clean, n_corrupted=n_corrupted,
                     n_dev=n_dev, n_test=0, queries=queries, budget=budget)
    if heads == "task":
        effects = effects or head_effects(model, task, fmt=resolved, items=items, **settings)
        ranking = effects.top_heads(k or FV_HEADS)
        means: HeadEffects | MeanActivations = effects
    else:
        if heads == "universal":
            names = [spec if isinstance(spec, str) else spec.name for spec in universal_tasks]
            tasks = [task if name == task.name else spec for name, spec in zip(names, universal_tasks)]
            if effects is None and task.name in names:  # on this task's items, drawn above: screened once
                effects = head_effects(model, task, fmt=resolved, items=items, **settings)
            known = {task.name: effects} if effects is not None else {}
            computed, _ = effects_over(model, tasks, known, fmt=fmt, **settings)
            heads = universal_heads(computed, k or FV_HEADS)
        if not isinstance(heads, UniversalHeads):
            raise TvLensError(f"heads must be 'universal', 'task' or a UniversalHeads, got {heads!r}")
        if heads.fingerprint != model_provenance(model)["fingerprint"]:
            raise TvLensError(f"the universal head set was ranked on another model ({heads.model}): rank the heads "
                              f"of this model (universal_heads)")
        ranking = heads.top_heads(k)
        if effects is None:
            with stage("ā over clean prompts"):
                means = mean_activations(model, items.clean, resolved, task.name, budget)
        else:
            means = effects
    vectors = fv_vectors(model, means, ranking, formulation)
    dev_accuracy: list[float] = []
    if layer is None:
        with stage("FV layer sweep on dev items"):
            by_layer = accuracy_with(model, resolved, [resolved.zero_shot_prompt(i) for i in items.dev], items.dev,
                                     {formulation: added(vectors, range(model.cfg.n_layers))}, budget)[formulation]
        dev_accuracy = [a.value for a in by_layer]
        layer = best_layer(dev_accuracy)
    check_layer(model, layer)
    info = model_provenance(model)
    return FunctionVector(
        vectors=vectors, layer=layer, model=info["model"], fingerprint=info["fingerprint"],
        prompt_format=asdict(resolved), n_shots=n_shots, n_contexts=len(items.clean), seed=seed,
        task=task.name, versions=versions(), dev_accuracy=dev_accuracy,
        heads=[[layer_, head, round(aie, 6)] for layer_, head, aie in ranking],
    )


def effects_over(model: Model, tasks: Sequence[str | Task], known: Mapping[str, HeadEffects] | None = None,
                 **settings) -> tuple[list[HeadEffects], dict[str, str]]:
    """The head effects of each task (`head_effects` with `settings`; those in `known` reused), for a
    universal head set; and the tasks left out because they cannot take part (`UnusableTask`: e.g. ICL
    answers no validation query correctly), with why. TvLensError when none can."""
    effects, left_out = [], {}
    for spec in tasks:
        task = resolve_task(spec)
        if known and task.name in known:
            effects.append(known[task.name])
            continue
        try:
            effects.append(head_effects(model, task, **settings))
        except UnusableTask as err:
            left_out[task.name] = str(err)
    if not effects:
        raise TvLensError("none of the tasks of the universal head set can take part for this model and format "
                          "(see UnusableTask): rank each task's own heads (heads='task') or pass a UniversalHeads")
    return effects, left_out
