"""Causal mediation over attention heads (Todd et al. 2024): which heads carry the task to the last token.

Mean head activations ā(l,h): each head's output at the last token (`blocks.l.attn.hook_z`, before the
output projection), averaged over clean ICL prompts of the task. Indirect effect of head (l,h) on a
corrupted prompt (labels shuffled among the demonstrations): P(first token of the answer) with the
head's last-token output replaced by ā(l,h), minus P(first token) without a patch. AIE: its mean over
the corrupted prompts, with a 95% Student-t interval. Both are taken over validation queries the model
answers correctly with clean prompts (the paper's filter, `tv_lens.function_vectors.items`).

The universal head set (`universal_heads`): heads ranked by their AIE averaged over several tasks, the
top k of which make every task's function vector (the paper's default).

Every patch is at the last token, so each corrupted prompt's prefix runs once and its key/value
cache serves the unpatched run and all n_layers x n_heads patched runs (the engine's prefix reuse).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

import torch
from jaxtyping import Float
from scipy.stats import t as student_t
from torch import Tensor

from tv_lens.codec import Layer, PerLayer, Record
from tv_lens.errors import TvLensError
from tv_lens.function_vectors.items import FVItems, answer_tokens, fv_items, task_in_format
from tv_lens.models.bridge import Model
from tv_lens.models.provenance import model_provenance, versions
from tv_lens.patching.engine import Budget, Prediction, Run, counting, encode, predict
from tv_lens.patching.guard import check_model
from tv_lens.patching.heads import NORM_SCALE_HOOK, has_post_attention_norm, head_contributions, to_residual
from tv_lens.patching.interventions import HOOK_Z, RESID_POST, Intervention
from tv_lens.progress import stage
from tv_lens.settings import FV_CLEAN, FV_CORRUPTED, FV_HEADS, FV_PAPER
from tv_lens.stats import Accuracy
from tv_lens.tasks import Item, Task
from tv_lens.tasks.prompts import PromptFormat

TENSORS = ("mean_z", "mean_share", "resid_norm", "effects")


@dataclass
class MeanActivations:
    """What a function vector is built from, for one task: ā, each head's mean write to the residual stream
    and the residual norm, over the last token of the clean prompts, and those prompts' accuracy.

    `mean_z[l, h]` is ā(l,h); `mean_share[l, h]` the mean of what head (l,h) adds to the residual
    stream (`tv_lens.patching.heads`: after a post-attention norm where the model has one); `resid_norm[l]` the
    mean norm of `hook_resid_post`.
    """

    task: str
    mean_z: Float[Tensor, "n_layers n_heads d_head"]
    mean_share: Float[Tensor, "n_layers n_heads d_model"]
    resid_norm: Float[Tensor, " n_layers"]
    clean_accuracy: Accuracy


@dataclass
class HeadEffects:
    """The result of `head_effects` on one task: each head's mean activation and its indirect effects.

    Saved by the function-vector experiment as JSON (`to_dict`) beside its tensors (`tensors`).

    Attributes:
        task: the task's name.
        mean_z: ā(l,h), each head's mean output at the last token of the clean prompts (`attn.hook_z`),
            [n_layers, n_heads, d_head].
        mean_share: the mean of what each head adds to the residual stream there (after a post-attention
            norm where the model has one), [n_layers, n_heads, d_model].
        resid_norm: the mean norm of `hook_resid_post` at each layer there, [n_layers].
        effects: `effects[i, l, h]` is the indirect effect of head (l,h) on corrupted prompt i: P(first
            answer token) with the head's last-token output replaced by ā(l,h), minus without the patch.
        clean_accuracy: accuracy of the clean prompts (first answer token).
        corrupted_accuracy: accuracy of the corrupted (shuffled-label) prompts, unpatched.
        icl_accuracy: ICL's accuracy on the validation queries looked at (with `queries="icl_correct"`, the
            share the filter kept).
        corrupted_prob: the mean P(first answer token) of the corrupted prompts, unpatched.
        settings: the protocol: prompt format, sizes, query set, filter, seed, hook, position and metric.
        model: the model's spec, weights fingerprint, n_layers and d_model.
        timings: seconds spent in each phase.
        tokens: tokens pushed through the model.
        versions: the versions of the libraries that shape the numbers.
    """

    task: str
    mean_z: Float[Tensor, "n_layers n_heads d_head"]
    mean_share: Float[Tensor, "n_layers n_heads d_model"]
    resid_norm: Float[Tensor, " n_layers"]
    effects: Float[Tensor, "n_corrupted n_layers n_heads"]
    clean_accuracy: Accuracy
    corrupted_accuracy: Accuracy
    icl_accuracy: Accuracy
    corrupted_prob: float
    settings: dict
    model: dict
    timings: dict = field(default_factory=dict)
    tokens: int = 0
    versions: dict = field(default_factory=versions)

    ACCURACIES: ClassVar[tuple[str, ...]] = ("clean_accuracy", "corrupted_accuracy", "icl_accuracy")

    @property
    def aie(self) -> Float[Tensor, "n_layers n_heads"]:
        """The average indirect effect (AIE) of each head over the corrupted prompts, [n_layers, n_heads]."""
        return self.effects.mean(0)

    @property
    def interval(self) -> tuple[Float[Tensor, "n_layers n_heads"], Float[Tensor, "n_layers n_heads"]]:
        """The 95% Student-t interval of each head's AIE over the corrupted prompts, (low, high); NaN with
        fewer than 2 prompts."""
        return _t_interval(self.effects)

    def top_heads(self, k: int = FV_HEADS) -> list[tuple[int, int, float]]:
        """The heads with the largest AIE on this task.

        Args:
            k: how many heads (the paper's function vector sums 10).

        Returns:
            (layer, head, AIE) of each, largest AIE first (ties: the earlier head).

        Raises:
            TvLensError: `k` below 1 or above the model's number of heads.
        """
        return _top(self.aie, k)

    @property
    def means(self) -> MeanActivations:
        """The mean activations these effects were measured with (`mean_z`, `mean_share`, `resid_norm`)."""
        return MeanActivations(self.task, self.mean_z, self.mean_share, self.resid_norm, self.clean_accuracy)

    def to_dict(self) -> dict:
        """Everything but the tensors, JSON-ready.

        Returns:
            The fields, with the AIE matrix and its interval as nested lists and each accuracy as a dict.
        """
        low, high = self.interval
        return {"task": self.task, "aie": self.aie.tolist(), "aie_low": low.tolist(), "aie_high": high.tolist(),
                **{name: getattr(self, name).to_dict() for name in self.ACCURACIES},
                "corrupted_prob": self.corrupted_prob, "settings": self.settings, "model": self.model,
                "timings": self.timings, "tokens": self.tokens, "versions": self.versions}

    def tensors(self) -> dict[str, Tensor]:
        """The tensors `to_dict` leaves out, to save beside it.

        Returns:
            `mean_z`, `mean_share`, `resid_norm` and `effects` by name.
        """
        return {name: getattr(self, name).contiguous() for name in TENSORS}

    @classmethod
    def from_parts(cls, data: dict, tensors: dict[str, Tensor]) -> HeadEffects:
        """Rebuild head effects from what `to_dict` and `tensors` gave.

        Args:
            data: the output of `to_dict`.
            tensors: the output of `tensors`.

        Returns:
            The head effects.
        """
        accuracies = {k: Accuracy(data[k]["correct"], data[k]["total"]) for k in cls.ACCURACIES}
        plain = {k: data[k] for k in ("task", "corrupted_prob", "settings", "model", "timings", "tokens", "versions")}
        parts: dict[str, Any] = {**plain, **accuracies, **{name: tensors[name] for name in TENSORS}}
        return cls(**parts)


def _t_interval(samples: Float[Tensor, "n ..."]) -> tuple[Tensor, Tensor]:
    """The 95% Student-t interval of the mean over the first dimension (NaN with fewer than 2 samples)."""
    mean, n = samples.mean(0), samples.shape[0]
    if n < 2:
        nan = torch.full_like(mean, float("nan"))
        return nan, nan
    half = float(student_t.ppf(0.975, n - 1)) * samples.std(0) / n ** 0.5
    return mean - half, mean + half


def _top(aie: Float[Tensor, "n_layers n_heads"], k: int) -> list[tuple[int, int, float]]:
    """The `k` largest entries of `aie`, largest first (ties: the earlier head), as (layer, head, aie)."""
    n_heads = aie.shape[1]
    if not 1 <= k <= aie.numel():
        raise TvLensError(f"k must be between 1 and the model's {aie.numel()} heads, got {k}")
    flat = aie.flatten()
    order = torch.argsort(flat, descending=True, stable=True)[:k].tolist()
    return [(i // n_heads, i % n_heads, float(flat[i])) for i in order]


def mean_activations(model: Model, items: Sequence[Item], fmt: PromptFormat, task: str = "",
                     budget: Budget | None = None) -> MeanActivations:
    """ā, each head's write to the residual stream and the residual norm, averaged over the last
    token of the clean prompts of `items`; and their accuracy on the first answer token."""
    n_layers = model.cfg.n_layers
    z_names = [HOOK_Z.format(layer=layer) for layer in range(n_layers)]
    resid_names = [RESID_POST.format(layer=layer) for layer in range(n_layers)]
    scale_names = ([NORM_SCALE_HOOK.format(layer=layer) for layer in range(n_layers)]
                   if has_post_attention_norm(model) else [])
    runs = [Run(tokens) for tokens in encode(model, [fmt.icl_prompt(item) for item in items])]
    predictions = predict(model, runs, capture=z_names + resid_names + scale_names, budget=budget)
    z = torch.stack([torch.stack([p.captured[n] for n in z_names]) for p in predictions]).float()
    shares = []
    for layer in range(n_layers):
        scale = (torch.stack([p.captured[scale_names[layer]] for p in predictions]).float()[:, 0]
                 if scale_names else torch.ones(len(predictions)))
        contributions = head_contributions(model, layer, z[:, layer].to(model.cfg.device))
        shares.append(to_residual(model, layer, contributions, scale[:, None].to(contributions)).mean(0).cpu())
    resid = torch.stack([torch.stack([p.captured[n] for n in resid_names]) for p in predictions]).float()
    accepted = answer_tokens(model, fmt, items)
    return MeanActivations(task, z.mean(0), torch.stack(shares).float(), resid.norm(dim=-1).mean(0),
                           Accuracy.of(p.token in a for p, a in zip(predictions, accepted)))


def _answer_prob(prediction: Prediction) -> Tensor:
    """The probability of the first answer token, which every run of the mediation names as its target."""
    assert prediction.target_probs is not None
    return prediction.target_probs[0]


def head_effects(
    model: Model,
    task: Task,
    *,
    fmt: str | PromptFormat = "qa",
    seed: int = 0,
    n_shots: int = FV_PAPER.n_shots,
    n_clean: int = FV_CLEAN,
    n_corrupted: int = FV_CORRUPTED,
    n_dev: int = FV_PAPER.n_dev,
    queries: str = "icl_correct",
    single_token_filter: bool = False,
    items: FVItems | None = None,
    reuse_prefix: bool = True,
    budget: Budget | None = None,
) -> HeadEffects:
    """Causal mediation over attention heads (Todd et al. 2024): which heads carry the task to the last token.

    ā(l,h) is each head's output at the last token averaged over `n_clean` clean `n_shots`-shot prompts;
    the indirect effect of head (l,h) on a corrupted prompt (labels shuffled among its demonstrations) is
    P(first answer token) with the head's last-token output replaced by ā(l,h), minus without the patch;
    the AIE is its mean over `n_corrupted` corrupted prompts. The queries are validation queries the
    model answers correctly in context (the paper's filter). Defaults are the paper's.

    Args:
        model: a `TransformerBridge` in compatibility mode (`load_model`).
        task: the task; every pair whose answer has a first token of its own after the query is kept
            (the first answer token is scored), unless `single_token_filter`.
        fmt: the prompt format: "qa" (the function-vector paper's `Q: {x}\\nA: {y}`), "arrow" (the
            task-vector paper's, in the variant the filter rule chooses) or a `PromptFormat`.
        seed: the seed of the split and of every item.
        n_shots: demonstrations per prompt.
        n_clean: clean prompts ā is averaged over.
        n_corrupted: shuffled-label prompts the AIE is averaged over.
        n_dev: the most validation queries kept (those ICL answers correctly, screened in seeded order).
        queries: "icl_correct" (the paper's: validation queries the model answers correctly in context)
            or "all" (any, unscreened).
        single_token_filter: keep single-token answers only.
        items: the item sets to use instead of sampling them (`tv_lens.function_vectors.items.fv_items`).
        reuse_prefix: run each corrupted prompt's prefix once and reuse its key/value cache for the
            unpatched run and every patched one; False reruns it (slower, for comparison).
        budget: tokens and rows per forward pass (`tv_lens.patching.engine.Budget`).

    Returns:
        ā, each head's mean write to the residual stream, the indirect effects and the accuracies.

    Raises:
        UnusableTask: no answer has a first token of its own in this format, or the model answers no
            validation query correctly in context (`queries="all"` takes every query).
        TvLensError: an unknown `fmt` or `queries`; a size below 1; too few pairs for the split.
        PromptTextError: a text the prompt format cannot hold.
        UnsupportedModelError: `model` is not a `TransformerBridge` in compatibility mode and eval mode.
    """
    check_model(model)
    timings: dict[str, float] = {}
    start = time.perf_counter()
    kept, fmt = task_in_format(model, task, fmt, n_shots=n_shots, single_token_filter=single_token_filter)
    with counting() as count:
        if items is None:
            with stage("ICL-correct validation queries" if queries == "icl_correct" else "validation queries"):
                items = fv_items(model, kept, fmt, seed, n_shots=n_shots, n_clean=n_clean, n_corrupted=n_corrupted,
                                 n_dev=n_dev, n_test=0, queries=queries, budget=budget)
            timings["queries"] = time.perf_counter() - start
        clock = time.perf_counter()
        with stage("ā over clean prompts"):
            means = mean_activations(model, items.clean, fmt, task.name, budget)
        timings["clean"] = time.perf_counter() - clock
        clock = time.perf_counter()
        with stage("AIE of every head"):
            effects, corrupted_probs, corrupted_hits = _patched_pass(model, items.corrupted, fmt, means.mean_z,
                                                                     reuse_prefix, budget)
        timings["corrupted"] = time.perf_counter() - clock
    return HeadEffects(
        task=task.name, mean_z=means.mean_z, mean_share=means.mean_share, resid_norm=means.resid_norm,
        effects=effects, clean_accuracy=means.clean_accuracy, corrupted_accuracy=Accuracy.of(corrupted_hits),
        icl_accuracy=items.icl_valid, corrupted_prob=float(corrupted_probs.mean()),
        settings=dict(prompt_format=asdict(fmt), n_shots=n_shots, n_clean=len(items.clean),
                      n_corrupted=len(items.corrupted), n_queries=len({i.query for i in items.corrupted + items.clean}),
                      queries=items.queries, single_token_filter=single_token_filter, n_pairs=len(kept), seed=seed,
                      hook=HOOK_Z, position="last", metric="probability of the first answer token"),
        model=model_provenance(model), timings=timings, tokens=count.tokens,
    )


def _patched_pass(model: Model, items: list[Item], fmt: PromptFormat, mean_z: Tensor, reuse_prefix: bool,
                  budget: Budget | None) -> tuple[Tensor, Tensor, list[bool]]:
    """Indirect effects [item, layer, head], unpatched P(correct) per item, and unpatched hits."""
    n_layers, n_heads = mean_z.shape[:2]
    heads = [(layer, head) for layer in range(n_layers) for head in range(n_heads)]
    accepted = answer_tokens(model, fmt, items)
    groups = []
    for answers, tokens in zip(accepted, encode(model, [fmt.icl_prompt(item) for item in items])):
        target = answers[:1]
        patches = [Run(tokens, (Intervention(layer, mean_z[layer, head], hook=HOOK_Z, head=head),), target)
                   for layer, head in heads]
        groups.append([Run(tokens, (), target), *patches])
    outputs = predict(model, groups, reuse_prefix=reuse_prefix, budget=budget)
    unpatched = torch.stack([_answer_prob(out[0]) for out in outputs]).float()
    patched = torch.stack([torch.stack([_answer_prob(p) for p in out[1:]]) for out in outputs]).float()
    effects = (patched - unpatched[:, None]).reshape(len(items), n_layers, n_heads)
    hits = [out[0].token in answers for out, answers in zip(outputs, accepted)]
    return effects, unpatched, hits


@dataclass(frozen=True)
class UniversalHeads(Record):
    """The function-vector paper's universal head set: heads ranked by their AIE averaged over tasks.

    Made by `universal_heads`; `heads`, the top `k`, is the set every task's function vector sums (pass
    it as `function_vector(..., heads=universal)`).

    Attributes:
        tasks: the tasks averaged over (one model, one prompt format).
        k: the size of the set.
        model: the spec of the model.
        fingerprint: the model's weights fingerprint.
        aie: each head's AIE averaged over the tasks: a list per layer of one value per head.
        aie_low: the lower bound of its 95% Student-t interval over the tasks.
        aie_high: the upper bound.

    Raises:
        TvLensError: no task, or `k` below 1 or above the number of heads.
    """

    tasks: list[str]
    k: int
    model: str
    fingerprint: str
    aie: PerLayer[list[float]]
    aie_low: PerLayer[list[float]]
    aie_high: PerLayer[list[float]]
    DERIVED: ClassVar[dict] = {"heads": list[tuple[Layer, int, float]]}

    def __post_init__(self) -> None:
        if not self.tasks:
            raise TvLensError("a universal head set needs the head effects of at least one task")
        _top(torch.tensor(self.aie), self.k)

    def top_heads(self, k: int | None = None) -> list[tuple[int, int, float]]:
        """The heads with the largest mean AIE.

        Args:
            k: how many heads; default this set's `k`.

        Returns:
            (layer, head, mean AIE) of each, largest first (ties: the earlier head).

        Raises:
            TvLensError: `k` below 1 or above the number of heads.
        """
        return _top(torch.tensor(self.aie), self.k if k is None else k)

    @property
    def heads(self) -> list[tuple[int, int, float]]:
        """The universal set: the top `k` heads, as (layer, head, mean AIE)."""
        return self.top_heads()

    @property
    def task(self) -> str:
        """What the ranking averages (a title for figures)."""
        return f"mean over {len(self.tasks)} tasks"


def universal_heads(effects: Sequence[HeadEffects], k: int = FV_HEADS) -> UniversalHeads:
    """Rank the heads over several tasks: the function-vector paper's universal head set.

    Each head's AIE is averaged over the tasks (each task weighs the same); the top `k` make every task's
    function vector. Compute it once and pass it to `function_vector(..., heads=...)`.

    Args:
        effects: the `head_effects` of several tasks, each once, of one model and one prompt format.
        k: the size of the set (the paper's is 10).

    Returns:
        The mean AIE of every head with its interval over the tasks, and the set.

    Raises:
        TvLensError: no effects; a task twice; effects of different models or prompt formats; `k` below 1
            or above the number of heads.
    """
    if not effects:
        raise TvLensError("universal_heads needs the head effects of at least one task")
    names = [e.task for e in effects]
    if len(set(names)) != len(names):
        raise TvLensError(f"universal_heads got a task twice: {', '.join(names)}; pass each task's effects once")
    fingerprints = {e.model.get("fingerprint") for e in effects}
    if len(fingerprints) != 1 or len({tuple(e.aie.shape) for e in effects}) != 1:
        raise TvLensError("universal_heads got head effects of different models: pass the effects of one model")
    if len({str(e.settings.get("prompt_format")) for e in effects}) != 1:
        raise TvLensError("universal_heads got head effects in different prompt formats: pass those of one format")
    aie = torch.stack([e.aie for e in effects])
    low, high = _t_interval(aie)
    return UniversalHeads(names, k, effects[0].model.get("model", ""), str(fingerprints.pop()), aie.mean(0).tolist(),
                          low.tolist(), high.tolist())
