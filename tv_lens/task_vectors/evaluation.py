"""The main experiment for one task: zero-shot baseline, ICL, and the task vector at its best layer."""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field

import torch
from jaxtyping import Float
from torch import Tensor

from tv_lens.codec import NOT_STORED, Layer, PerLayer, Record
from tv_lens.errors import TvLensError
from tv_lens.models.bridge import Model
from tv_lens.models.provenance import model_provenance, versions
from tv_lens.patching.engine import Budget, Run, counting, decode, encode, predict, token_limit
from tv_lens.patching.guard import check_model
from tv_lens.patching.interventions import RESID_POST, Intervention
from tv_lens.progress import stage
from tv_lens.settings import PAPER, Settings
from tv_lens.stats import Accuracy
from tv_lens.task_vectors.applying import next_tokens
from tv_lens.task_vectors.learning import learn_items
from tv_lens.task_vectors.sweep import best_layer, layer_sweep
from tv_lens.tasks import Task, get_scorer, sample_splits
from tv_lens.tasks.prompts import PromptFormat, prompt_ready


@dataclass(frozen=True)
class ItemRecord(Record):
    """One test item and what each method predicted for it."""

    query: str
    answers: tuple[str, ...]
    icl: str
    tv: str


@dataclass(frozen=True)
class Hits(Record):
    """Whether ICL and the task vector were right on each test item (for paired CIs)."""

    icl: list[bool] = field(default_factory=list)
    tv: list[bool] = field(default_factory=list)


@dataclass(frozen=True)
class EvalResult(Record):
    """The result of `evaluate` on one task: baseline, ICL and task-vector accuracies, the dev curve, provenance.

    One task's unit of the main table on disk (`to_dict`, `from_dict`); a record read back is checked
    against itself (its accuracies against its per-item hits, its best layer against its dev curve).

    Attributes:
        task: the task's name.
        category: the task's category.
        baseline: zero-shot accuracy on the bare baseline queries.
        icl: in-context-learning accuracy on the test items.
        tv: task-vector accuracy on the test items, θ written at `best_layer`.
        best_layer: the first layer with the best dev accuracy.
        dev_accuracy_by_layer: the task vector's dev accuracy at each layer.
        n_pairs: the task's pairs.
        n_pairs_filtered: the pairs left after the single-token filter and the prompt checks.
        leading_space: the prompt variant used (True: the paper's variant B, ` x-> y`).
        seed: the seed of the item sets.
        settings: the protocol: the sizes, the filter, the prompt format, the hook, position and operation.
        model: the model's spec, weights fingerprint, n_layers and d_model.
        timings: seconds spent in each phase.
        tokens: tokens pushed through the model.
        test_items: each test item's query, answers, and the ICL and task-vector predictions.
        versions: the versions of the libraries that shape the numbers.
        hits: whether ICL and the task vector were right on each test item (for paired intervals).
        mean_theta: θ averaged over the test items at every layer, [n_layers, d_model]; in memory only (not
            in `to_dict`), None once read back.

    Raises:
        TvLensError: accuracies that differ from the per-item hits, or a best layer that is not the first best
            of the dev curve (a record edited or damaged).
    """

    task: str
    category: str
    baseline: Accuracy
    icl: Accuracy
    tv: Accuracy
    best_layer: Layer
    dev_accuracy_by_layer: PerLayer[Accuracy]
    n_pairs: int
    n_pairs_filtered: int
    leading_space: bool
    seed: int
    settings: dict
    model: dict
    timings: dict
    tokens: int
    test_items: list[ItemRecord] = field(default_factory=list)
    versions: dict = field(default_factory=versions)
    hits: Hits = field(default_factory=Hits)
    mean_theta: Float[Tensor, "n_layers d_model"] | None = field(default=None, repr=False, compare=False,
                                                                  metadata=NOT_STORED)

    def __post_init__(self) -> None:
        """Refuse counts that differ from the per-item records they come from (ICL and task-vector hits, one
        per test item) and a best layer that is not the first best of the dev curve: a record read back
        is checked against itself, not trusted."""
        n = len(self.test_items)
        for name, hits in (("icl", self.hits.icl), ("tv", self.hits.tv)):
            stored = getattr(self, name)
            if len(hits) != n or Accuracy.of(hits) != stored:
                raise TvLensError(f"{self.task}: {name} {stored.correct}/{stored.total} differs from its per-item hits "
                                  f"({sum(map(bool, hits))}/{len(hits)}, {n} test items): the record was edited or "
                                  f"damaged")
        dev = [a.value for a in self.dev_accuracy_by_layer]
        if dev and all(math.isfinite(v) for v in dev) and best_layer(dev) != self.best_layer:
            raise TvLensError(f"{self.task}: best_layer {self.best_layer} is not the first best layer of its dev "
                              f"accuracies ({best_layer(dev)}): the record was edited or damaged")


def evaluate(
    model: Model,
    task: Task,
    *,
    seed: int = 0,
    settings: Settings = PAPER,
    single_token_filter: bool | None = None,
    fmt: PromptFormat | None = None,
    reuse_prefix: bool = True,
    budget: Budget | None = None,
    **sizes: int,
) -> EvalResult:
    """Run the paper's main experiment on one task: zero-shot baseline, ICL, and the task vector at its best layer.

    The task is filtered for the model's tokenizer (prompt variant and single-token filter), then: baseline
    accuracy on `n_baseline` bare queries; ICL on `n_test` items of `n_shots` demonstrations; θ per item
    (the mean over its `n_dummies` dummy queries); task-vector accuracy on `n_dev` dev items at every layer;
    task-vector test accuracy at the first best dev layer, each test item with its own θ.

    Args:
        model: a `TransformerBridge` in compatibility mode (`load_model`).
        task: the task (`get_task`, `load_task`).
        seed: the seed of every item set (`sample_splits`).
        settings: the protocol's sizes; default the paper's (`Settings()`).
        single_token_filter: override the task's filter setting; None keeps it.
        fmt: the prompt format; default the one the filter chose for the model (`PromptFormat.for_task`).
        reuse_prefix: run each item's demonstrations once and reuse their key/value cache for its dummy
            queries and its query; False reruns them (the same numbers up to float rounding, slower).
        budget: tokens and rows per forward pass (`tv_lens.patching.engine.Budget`).
        **sizes: sizes of `settings` to change, by name (e.g. `n_test=10`).

    Returns:
        The accuracies with Wilson 95% intervals, the dev curve, the test predictions and the provenance.

    Raises:
        TvLensError: a size below 1, or more than the task can supply; a task the filter cannot read (see
            `Task.filtered`).
        TvLensTypeError: an unknown size in `**sizes`.
        UnsupportedModelError: `model` is not a `TransformerBridge` in compatibility mode and eval mode.

    Example:
        ```python
        result = tv.evaluate(model, tv.get_task("antonyms"), n_test=10)
        print(result.icl, result.tv, result.best_layer)
        ```
    """
    check_model(model)
    settings = settings.but(**sizes)
    with counting() as count:
        timings: dict[str, float] = {}
        clock = time.perf_counter()

        def lap(phase: str) -> None:
            nonlocal clock
            now = time.perf_counter()
            timings[phase] = now - clock
            clock = now

        if settings.n_dummies < 1:
            raise TvLensError(f"n_dummies must be at least 1 (θ is the mean over dummy queries; the paper uses 2), "
                              f"got {settings.n_dummies}")
        use_filter = task.single_token_filter if single_token_filter is None else single_token_filter
        kept = task.filtered(model.tokenizer, use_filter)
        fmt = fmt or PromptFormat.for_task(kept)
        kept = prompt_ready(kept, fmt, model.tokenizer, token_limit(model), settings.n_shots)
        splits = sample_splits(kept, seed=seed, **asdict(settings))
        scorer = get_scorer(task.scoring)
        lap("prepare")

        with stage("baseline"):
            baseline_runs = [Run(t) for t in encode(model, [fmt.zero_shot_prompt(i) for i in splits.baseline])]
            baseline_preds = decode(model, [p.token for p in predict(model, baseline_runs, budget=budget)])
        baseline = Accuracy.of(scorer(p, i.answers) for p, i in zip(baseline_preds, splits.baseline))
        lap("baseline")

        with stage("ICL and θ of the test items"):
            test_thetas, icl_tokens = learn_items(model, splits.test, fmt, icl=True,
                                                  reuse_prefix=reuse_prefix, budget=budget)
        icl_preds = decode(model, icl_tokens)
        icl_hits = [scorer(p, i.answers) for p, i in zip(icl_preds, splits.test)]
        lap("icl_and_theta_test")

        with stage("θ of the dev items"):
            dev_thetas, _ = learn_items(model, splits.dev, fmt, reuse_prefix=reuse_prefix, budget=budget)
        lap("theta_dev")

        with stage("layer sweep"):
            by_layer, _ = layer_sweep(model, [fmt.zero_shot_prompt(i) for i in splits.dev], dev_thetas,
                                      lambda i, p: scorer(p, splits.dev[i].answers), budget=budget)
        chosen = best_layer([a.value for a in by_layer])
        lap("sweep")

        with stage("task vector on the test items"):
            tv_tokens = next_tokens(model, encode(model, [fmt.zero_shot_prompt(i) for i in splits.test]),
                                    [(Intervention(chosen, theta[chosen]),) for theta in test_thetas], budget=budget)
        tv_preds = decode(model, tv_tokens)
        tv_hits = [scorer(p, i.answers) for p, i in zip(tv_preds, splits.test)]
        lap("test")

        return EvalResult(
            task=task.name, category=task.category, baseline=baseline,
            icl=Accuracy.of(icl_hits), tv=Accuracy.of(tv_hits),
            best_layer=chosen, dev_accuracy_by_layer=by_layer, n_pairs=len(task),
            n_pairs_filtered=len(kept), leading_space=fmt.leading_space, seed=seed,
            settings=dict(**asdict(settings), single_token_filter=use_filter, prompt_format=asdict(fmt),
                          hook=RESID_POST, position="last", operation="replace"),
            model=model_provenance(model), timings=timings, tokens=count.tokens,
            test_items=[ItemRecord(i.query, i.answers, c, t)
                        for i, c, t in zip(splits.test, icl_preds, tv_preds)],
            hits=Hits(icl_hits, tv_hits),
            mean_theta=torch.stack(test_thetas).mean(0),
        )
