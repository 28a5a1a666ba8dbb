"""Function vectors (Todd et al. 2024): the sum of the top-k heads' mean outputs, added to the residual
stream of a prompt without demonstrations.

Defaults are the paper's: Q:/A: prompts with 10 demonstrations, ā over 100 clean prompts, AIE over 25
shuffled-label prompts (`tv_lens.function_vectors.mediation`), k = 10 heads, the FV added (not written over) at the
last token of `blocks.L.hook_resid_post`, L chosen on dev items as for task vectors.

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
the heads and their AIE.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

import torch
from jaxtyping import Float
from torch import Tensor

from tv_lens.codec import Layer, PerLayer, Record
from tv_lens.function_vectors.items import FVItems, fv_items, task_in_format
from tv_lens.function_vectors.mediation import HeadEffects, head_effects
from tv_lens.models.bridge import Model
from tv_lens.models.provenance import model_provenance, versions
from tv_lens.patching.engine import Budget, Run, decode, encode, predict
from tv_lens.patching.guard import check_model
from tv_lens.patching.heads import head_contributions
from tv_lens.patching.interventions import Intervention, check_layer
from tv_lens.progress import stage
from tv_lens.settings import FV_CLEAN, FV_CORRUPTED, FV_HEADS, FV_PAPER
from tv_lens.stats import Accuracy
from tv_lens.task_vectors.sweep import best_layer
from tv_lens.task_vectors.vector import FunctionVector
from tv_lens.tasks import Item, Task, get_scorer
from tv_lens.tasks.prompts import PromptFormat

FORMULATIONS = ("residual", "out_proj", "scaled")


def fv_vectors(model: Model, effects: HeadEffects, k: int = FV_HEADS, formulation: str = "residual"
               ) -> Float[Tensor, "n_layers d_model"]:
    """The FV of the top-`k` heads of `effects` in `formulation`, as the vector to add at each layer."""
    if formulation not in FORMULATIONS:
        raise ValueError(f"unknown FV formulation {formulation!r}: choose one of {', '.join(FORMULATIONS)}")
    parts = []
    for layer, head, _ in effects.top_heads(k):
        if formulation == "out_proj":
            mean_z = effects.mean_z[layer].to(model.cfg.device)
            parts.append(head_contributions(model, layer, mean_z)[head].float().cpu())
        else:
            parts.append(effects.mean_share[layer, head].float())
    fv = torch.stack(parts).sum(0)
    if formulation == "scaled":
        return fv / fv.norm() * effects.resid_norm[:, None].float()
    return fv.expand(effects.resid_norm.shape[0], -1).clone()


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
    task: Task,
    prompts: Sequence[str],
    items: Sequence[Item],
    edits: Mapping[str, Sequence[tuple[Intervention, ...]]],
    budget: Budget | None = None,
) -> dict[str, list[Accuracy]]:
    """For each name, the first-token accuracy of `prompts` (one per item) under each set of
    interventions of its list. Each prompt runs as one group with every set, so its prefix is
    computed once for all of them."""
    flat = [(name, edit) for name, sets in edits.items() for edit in sets]
    groups = [[Run(tokens, edit) for _, edit in flat] for tokens in encode(model, list(prompts))]
    predictions = [decode(model, [p.token for p in out]) for out in predict(model, groups, budget=budget)]
    score = get_scorer(task.scoring)
    accuracies: dict[str, list[Accuracy]] = {name: [] for name in edits}
    for j, (name, _) in enumerate(flat):
        accuracies[name].append(Accuracy.of(score(preds[j], item.answers) for preds, item in zip(predictions, items)))
    return accuracies


def added(vectors: Float[Tensor, "n_layers d_model"], layers: Sequence[int]) -> list[tuple[Intervention, ...]]:
    """The FV added at the last token of each of `layers` in turn."""
    return [(Intervention(layer, vectors[layer], mode="add"),) for layer in layers]


def evaluate_fvs(
    model: Model,
    task: Task,
    vectors: Mapping[str, Float[Tensor, "n_layers d_model"]],
    items: FVItems,
    fmt: PromptFormat,
    controls: Mapping[str, tuple[Intervention, ...]] | None = None,
    budget: Budget | None = None,
) -> tuple[dict[str, FVEvaluation], dict[str, dict[str, Accuracy]]]:
    """Each FV added at every layer on the dev items, zero-shot and with shuffled labels, and test
    accuracy at the first best dev layer of each; also the test accuracy of each control (a set of
    interventions, e.g. none, or θ) on both kinds of prompt: {kind: {control: accuracy}}.

    All FVs and controls share each prompt's forward passes (one group per prompt)."""
    controls = {"none": (), **(controls or {})}
    layers = range(model.cfg.n_layers)
    curves, chosen, test = {}, {}, {}
    for kind, dev, test_items, prompt in (
            ("zero_shot", items.dev, items.test, fmt.zero_shot_prompt),
            ("shuffled", items.dev_shuffled, items.test_shuffled, fmt.icl_prompt)):
        with stage(f"FV layer sweep, {kind.replace('_', '-')} dev items"):
            curves[kind] = accuracy_with(model, task, [prompt(i) for i in dev], dev,
                                         {name: added(v, layers) for name, v in vectors.items()}, budget)
        chosen[kind] = {name: best_layer([a.value for a in curve]) for name, curve in curves[kind].items()}
        at_best = {name: added(v, [chosen[kind][name]]) for name, v in vectors.items()}
        with stage(f"FV and controls, {kind.replace('_', '-')} test items"):
            test[kind] = accuracy_with(model, task, [prompt(i) for i in test_items], test_items,
                                       {**at_best, **{name: [edits] for name, edits in controls.items()}}, budget)
    evaluations = {name: FVEvaluation(curves["zero_shot"][name], curves["shuffled"][name], chosen["zero_shot"][name],
                                      chosen["shuffled"][name], test["zero_shot"][name][0],
                                      test["shuffled"][name][0])
                   for name in vectors}
    return evaluations, {kind: {name: test[kind][name][0] for name in controls} for kind in test}


def function_vector(
    model: Model,
    task: Task,
    k: int = FV_HEADS,
    *,
    formulation: str = "residual",
    fmt: str | PromptFormat = "qa",
    layer: int | None = None,
    effects: HeadEffects | None = None,
    seed: int = 0,
    n_shots: int = FV_PAPER.n_shots,
    n_clean: int = FV_CLEAN,
    n_corrupted: int = FV_CORRUPTED,
    n_dev: int = FV_PAPER.n_dev,
    budget: Budget | None = None,
) -> FunctionVector:
    """The FV of `task` from its top-`k` heads (`effects`, else computed with these settings), saved
    and applied like a task vector (its default mode adds it: `apply(model, fv, queries)`).

    Without `layer`, the layer is the first best of a sweep adding the FV to the zero-shot prompts of
    `n_dev` dev items (train queries).
    """
    check_model(model)
    kept, fmt = task_in_format(model, task, fmt, n_shots)
    items = fv_items(kept, seed, n_shots=n_shots, n_clean=n_clean, n_corrupted=n_corrupted, n_dev=n_dev, n_test=1)
    if effects is None:
        effects = head_effects(model, task, fmt=fmt, seed=seed, items=items, budget=budget)
    vectors = fv_vectors(model, effects, k, formulation)
    dev_accuracy: list[float] = []
    if layer is None:
        with stage("FV layer sweep on dev items"):
            by_layer = accuracy_with(model, kept, [fmt.zero_shot_prompt(i) for i in items.dev], items.dev,
                                     {formulation: added(vectors, range(model.cfg.n_layers))}, budget)[formulation]
        dev_accuracy = [a.value for a in by_layer]
        layer = best_layer(dev_accuracy)
    check_layer(model, layer)
    info = model_provenance(model)
    return FunctionVector(
        vectors=vectors, layer=layer, model=info["model"], fingerprint=info["fingerprint"],
        prompt_format=asdict(fmt), n_shots=n_shots, n_contexts=effects.settings["n_clean"], seed=seed,
        task=task.name, versions=versions(), dev_accuracy=dev_accuracy,
        heads=[[layer_, head, round(aie, 6)] for layer_, head, aie in effects.top_heads(k)],
    )

