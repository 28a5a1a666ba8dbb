"""Causal mediation over attention heads (Todd et al. 2024): which heads carry the task to the last token.

Mean head activations ā(l,h): each head's output at the last token (`blocks.l.attn.hook_z`, before the
output projection), averaged over clean ICL prompts of the task. Indirect effect of head (l,h) on a
corrupted prompt (labels shuffled among the demonstrations): P(correct first answer token) with the
head's last-token output replaced by ā(l,h), minus P(correct) without a patch. AIE: its mean over the
corrupted prompts, with a 95% Student-t interval.

Every patch is at the last token, so each corrupted prompt's prefix runs once and its key/value
cache serves the unpatched run and all n_layers x n_heads patched runs (the engine's prefix reuse).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from jaxtyping import Float
from scipy.stats import t as student_t
from torch import Tensor

from tv_lens.function_vectors.items import FVItems, fv_items, task_in_format
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
class HeadEffects:
    """ā, each head's mean write to the residual stream, and the indirect effects of one task.

    `mean_z[l, h]` is ā(l,h); `mean_share[l, h]` the mean over the same clean prompts of what head
    (l,h) adds to the residual stream (`tv_lens.patching.heads`: after a post-attention norm where the model
    has one); `resid_norm[l]` the mean norm of `hook_resid_post` at the last token of those prompts;
    `effects[i, l, h]` the indirect effect of head (l,h) on corrupted prompt i.
    """

    task: str
    mean_z: Float[Tensor, "n_layers n_heads d_head"]
    mean_share: Float[Tensor, "n_layers n_heads d_model"]
    resid_norm: Float[Tensor, " n_layers"]
    effects: Float[Tensor, "n_corrupted n_layers n_heads"]
    clean_accuracy: Accuracy
    corrupted_accuracy: Accuracy
    corrupted_prob: float
    settings: dict
    model: dict
    timings: dict = field(default_factory=dict)
    tokens: int = 0
    versions: dict = field(default_factory=versions)

    @property
    def aie(self) -> Float[Tensor, "n_layers n_heads"]:
        """The average indirect effect of each head."""
        return self.effects.mean(0)

    @property
    def interval(self) -> tuple[Float[Tensor, "n_layers n_heads"], Float[Tensor, "n_layers n_heads"]]:
        """The 95% Student-t interval of each head's AIE over the corrupted prompts."""
        n = self.effects.shape[0]
        if n < 2:
            nan = torch.full_like(self.aie, float("nan"))
            return nan, nan
        half = float(student_t.ppf(0.975, n - 1)) * self.effects.std(0) / n ** 0.5
        return self.aie - half, self.aie + half

    def top_heads(self, k: int = FV_HEADS) -> list[tuple[int, int, float]]:
        """The `k` heads with the largest AIE, largest first, as (layer, head, aie)."""
        aie = self.aie
        n_heads = aie.shape[1]
        if not 1 <= k <= aie.numel():
            raise ValueError(f"k must be between 1 and the model's {aie.numel()} heads, got {k}")
        order = torch.argsort(aie.flatten(), descending=True, stable=True)[:k].tolist()
        return [(i // n_heads, i % n_heads, float(aie.flatten()[i])) for i in order]

    def to_dict(self) -> dict:
        """Everything but the tensors, JSON-ready (with the AIE matrix and its interval as lists)."""
        low, high = self.interval
        return {"task": self.task, "aie": self.aie.tolist(), "aie_low": low.tolist(), "aie_high": high.tolist(),
                "clean_accuracy": self.clean_accuracy.to_dict(),
                "corrupted_accuracy": self.corrupted_accuracy.to_dict(), "corrupted_prob": self.corrupted_prob,
                "settings": self.settings, "model": self.model, "timings": self.timings, "tokens": self.tokens,
                "versions": self.versions}

    def tensors(self) -> dict[str, Tensor]:
        return {name: getattr(self, name).contiguous() for name in TENSORS}

    @classmethod
    def from_parts(cls, data: dict, tensors: dict[str, Tensor]) -> HeadEffects:
        """The inverse of `to_dict` and `tensors`."""
        accuracies = {k: Accuracy(data[k]["correct"], data[k]["total"])
                      for k in ("clean_accuracy", "corrupted_accuracy")}
        plain = {k: data[k] for k in ("task", "corrupted_prob", "settings", "model", "timings", "tokens", "versions")}
        parts: dict[str, Any] = {**plain, **accuracies, **{name: tensors[name] for name in TENSORS}}
        return cls(**parts)


def answer_token(model: Model, fmt: PromptFormat, item: Item) -> int:
    """The first token of the item's canonical answer as it follows the query in `fmt`."""
    query = fmt.query(item.query)
    prompt, full = encode(model, [query, fmt.demo(item.query, item.answers[0])])
    if full[:len(prompt)] != prompt or len(full) == len(prompt):
        raise ValueError(f"the answer {item.answers[0]!r} merges with the end of the query {query!r} when "
                         f"tokenized: its first token is not defined; use another prompt format")
    return full[len(prompt)]


def head_effects(
    model: Model,
    task: Task,
    *,
    fmt: str | PromptFormat = "qa",
    seed: int = 0,
    n_shots: int = FV_PAPER.n_shots,
    n_clean: int = FV_CLEAN,
    n_corrupted: int = FV_CORRUPTED,
    items: FVItems | None = None,
    reuse_prefix: bool = True,
    budget: Budget | None = None,
) -> HeadEffects:
    """ā over `n_clean` clean `n_shots`-shot prompts and the AIE of every head over `n_corrupted`
    shuffled-label prompts of `task`, in prompt format `fmt` ("qa", "arrow" or a `PromptFormat`:
    `tv_lens.function_vectors.items.task_in_format`).

    `items` overrides the sampled items (`tv_lens.function_vectors.items.fv_items` of the filtered task,
    this seed and these sizes).
    """
    check_model(model)
    timings: dict[str, float] = {}
    start = time.perf_counter()
    kept, fmt = task_in_format(model, task, fmt, n_shots)
    items = items or fv_items(kept, seed, n_shots=n_shots, n_clean=n_clean, n_corrupted=n_corrupted,
                              n_dev=1, n_test=1)
    with counting() as count:
        with stage("ā over clean prompts"):
            clean = _clean_pass(model, items.clean, fmt, budget)
        timings["clean"] = time.perf_counter() - start
        with stage("AIE of every head"):
            effects, corrupted_probs, corrupted_hits = _patched_pass(model, items.corrupted, fmt, clean["mean_z"],
                                                                     reuse_prefix, budget)
        timings["corrupted"] = time.perf_counter() - start - timings["clean"]
    return HeadEffects(
        task=task.name, mean_z=clean["mean_z"], mean_share=clean["mean_share"], resid_norm=clean["resid_norm"],
        effects=effects, clean_accuracy=clean["accuracy"], corrupted_accuracy=Accuracy.of(corrupted_hits),
        corrupted_prob=float(corrupted_probs.mean()),
        settings=dict(prompt_format=asdict(fmt), n_shots=n_shots, n_clean=len(items.clean),
                      n_corrupted=len(items.corrupted), seed=seed, hook=HOOK_Z, position="last",
                      metric="probability of the first answer token"),
        model=model_provenance(model), timings=timings, tokens=count.tokens,
    )


def _clean_pass(model: Model, items: list[Item], fmt: PromptFormat, budget: Budget | None) -> dict:
    """Each head's output (ā), its write to the residual stream and the residual norm, averaged over
    the last token of the clean prompts; and the clean prompts' accuracy on the first answer token."""
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
    targets = [answer_token(model, fmt, item) for item in items]
    return {"mean_z": z.mean(0), "mean_share": torch.stack(shares).float(), "resid_norm": resid.norm(dim=-1).mean(0),
            "accuracy": Accuracy.of(p.token == t for p, t in zip(predictions, targets))}


def _answer_prob(prediction: Prediction) -> Tensor:
    """P(answer) of a run whose one target is the item's answer token."""
    assert prediction.target_probs is not None, "every run of the patched pass has the answer as its target"
    return prediction.target_probs[0]


def _patched_pass(model: Model, items: list[Item], fmt: PromptFormat, mean_z: Tensor, reuse_prefix: bool,
                  budget: Budget | None) -> tuple[Tensor, Tensor, list[bool]]:
    """Indirect effects [item, layer, head], unpatched P(correct) per item, and unpatched hits."""
    n_layers, n_heads = mean_z.shape[:2]
    heads = [(layer, head) for layer in range(n_layers) for head in range(n_heads)]
    groups = []
    for item, tokens in zip(items, encode(model, [fmt.icl_prompt(item) for item in items])):
        target = (answer_token(model, fmt, item),)
        patches = [Run(tokens, (Intervention(layer, mean_z[layer, head], hook=HOOK_Z, head=head),), target)
                   for layer, head in heads]
        groups.append([Run(tokens, (), target), *patches])
    outputs = predict(model, groups, reuse_prefix=reuse_prefix, budget=budget)
    unpatched = torch.stack([_answer_prob(out[0]) for out in outputs]).float()
    patched = torch.stack([torch.stack([_answer_prob(p) for p in out[1:]]) for out in outputs]).float()
    effects = (patched - unpatched[:, None]).reshape(len(items), n_layers, n_heads)
    hits = [out[0].token == run.targets[0] for out, run in zip(outputs, (g[0] for g in groups))]
    return effects, unpatched, hits
