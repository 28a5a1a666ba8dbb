"""The results of each analysis as typed records: one dataclass per results file (its header, then
its body, in the order written) and one per unit of work. `to_dict` gives the JSON written,
`from_dict` reads it back checked against the field types (see `tv_lens.codec`).

Numbers that follow from others in the same file (an accuracy from its per-item hits, the means over
tasks from the tasks, a layer sweep's statistics from its curves) are recomputed whenever a record is
made, read back included, and a record whose stored numbers differ is refused: a file is never trusted
for what it can be checked against."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from tv_lens.analysis.geometry import ClusterStats
from tv_lens.analysis.lens import TopTokens
from tv_lens.analysis.summary import GroupSummary, TaskHits, summarize
from tv_lens.codec import Fraction, Layer, PerLayer, Record, ResultsError, stored_fields
from tv_lens.errors import TvLensError
from tv_lens.function_vectors.mediation import UniversalHeads
from tv_lens.function_vectors.vector import FVEvaluation
from tv_lens.stats import Accuracy
from tv_lens.task_vectors.evaluation import EvalResult

SCHEMA_VERSION = 3
"""Version 3 added each results file's `sources` and `digest`; unit records are unchanged since version 2."""
UNIT_SCHEMA_VERSIONS = (2, 3)
"""The versions of unit records this tv_lens reuses (their format is the same)."""


def same_numbers(a, b, rel: float = 1e-9, abs_: float = 1e-12) -> bool:
    """Whether two JSON-like values are equal, floats within round-off (NaN equal to NaN)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same_numbers(a[k], b[k], rel, abs_) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(same_numbers(x, y, rel, abs_) for x, y in zip(a, b))
    if isinstance(a, float) or isinstance(b, float):
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (a, b)):
            return False
        return (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=rel, abs_tol=abs_)
    return a == b


def _recomputed(name: str, stored, expected, what: str, rel: float = 1e-9) -> None:
    """Refuse `stored` (field `name`) when it differs from `expected`, recomputed from `what`."""
    if not same_numbers(stored.to_dict() if isinstance(stored, Record) else stored,
                        expected.to_dict() if isinstance(expected, Record) else expected, rel):
        raise TvLensError(f"{name} differs from what its {what} give: the file was edited or damaged")


@dataclass(frozen=True)
class ModelInfo(Record):
    """The model a result was computed with: its spec, weights fingerprint and shape."""

    model: str
    fingerprint: str
    n_layers: int
    d_model: int


@dataclass(frozen=True)
class Source(Record):
    """A unit record that results were assembled from: its analysis, its key and its digest then."""

    analysis: str
    key: str
    digest: str


@dataclass(frozen=True, kw_only=True)
class Results(Record):
    """What every results file starts with: what made it (schema, analysis, model and its weights'
    fingerprint, settings, seed, library versions), the unit records it was assembled from (`sources`) and
    the SHA-256 of the file without this field (`digest`); each analysis's results add their body. `UNIT`
    is the type of the analysis's units of work (None: it has none)."""

    schema_version: int
    analysis: str
    model: ModelInfo
    settings: dict
    seed: int
    versions: dict
    written_at: str
    sources: list[Source]
    digest: str
    UNIT: ClassVar[type[Record] | None] = None


# Experiment 1: the main table (a unit per task: its EvalResult).

@dataclass(frozen=True)
class Summary(Record):
    """Means over all tasks and per category (in order of first appearance)."""

    overall: GroupSummary
    categories: dict[str, GroupSummary]

    @classmethod
    def of(cls, results: Sequence[EvalResult], seed: int = 0) -> Summary:
        """The means of `results` over all tasks and per category, from each task's per-item hits."""
        categories: dict[str, list[EvalResult]] = {}
        for r in results:
            categories.setdefault(r.category, []).append(r)
        return cls(overall=summarize([task_hits(r) for r in results], seed=seed),
                   categories={c: summarize([task_hits(r) for r in rs], seed=seed) for c, rs in categories.items()})


def task_hits(result: EvalResult) -> TaskHits:
    """Per-item correctness of one task result (baseline items from their counts)."""
    base = result.baseline
    return TaskHits(baseline=[True] * base.correct + [False] * (base.total - base.correct),
                    icl=result.hits.icl, tv=result.hits.tv)


@dataclass(frozen=True, kw_only=True)
class MainTable(Results):
    tasks: list[EvalResult]
    summary: Summary
    UNIT: ClassVar[type[Record]] = EvalResult

    def __post_init__(self) -> None:
        if self.tasks:
            _recomputed("summary", self.summary, Summary.of(self.tasks, self.seed), "tasks' per-item hits")


# Experiment 2: the layer sweep, read from the main table.

@dataclass(frozen=True)
class LayerCurve(Record):
    """One task's task-vector dev accuracy at each layer, with the counts behind it."""

    task: str
    category: str
    best_layer: Layer
    accuracy: PerLayer[Fraction]
    correct: list[int]
    total: list[int]

    def __post_init__(self) -> None:
        if not len(self.accuracy) == len(self.correct) == len(self.total):
            raise TvLensError(f"{self.task}: accuracy, correct and total differ in length: the file was edited or "
                              "damaged")
        _recomputed("accuracy", self.accuracy, [Accuracy(c, t).value for c, t in zip(self.correct, self.total)],
                    "counts")

    @classmethod
    def of(cls, result: EvalResult) -> LayerCurve:
        by_layer = result.dev_accuracy_by_layer
        return cls(result.task, result.category, result.best_layer, [a.value for a in by_layer],
                   [a.correct for a in by_layer], [a.total for a in by_layer])


def sweep_statistics(curves: Sequence[LayerCurve]) -> dict[str, list[float]]:
    """Per layer, the mean, standard deviation, min and max over tasks of the curves' accuracies."""
    table = np.array([c.accuracy for c in curves], dtype=float)
    return {"mean": table.mean(0).tolist(), "std": table.std(0).tolist(),
            "min": table.min(0).tolist(), "max": table.max(0).tolist()}


@dataclass(frozen=True, kw_only=True)
class LayerSweep(Results):
    n_layers: int
    tasks: list[LayerCurve]
    mean: PerLayer[float]
    std: PerLayer[float]
    min: PerLayer[float]
    max: PerLayer[float]

    def __post_init__(self) -> None:
        if self.tasks:
            stored = {"mean": self.mean, "std": self.std, "min": self.min, "max": self.max}
            _recomputed("the statistics over tasks", stored, sweep_statistics(self.tasks), "tasks' curves")


# Experiment 3: conflicting tasks (a unit per pair).

@dataclass(frozen=True)
class ConflictItem(Record):
    """One query of a pair, its answers under A and under B, and the two predictions."""

    query: str
    answers_a: list[str]
    answers_b: list[str]
    icl: str
    patched: str


@dataclass(frozen=True)
class ConflictPair(Record):
    """Demonstrations of A with θ_B patched in at `layer`: ICL and the patched run, each scored as A and as B."""

    task_a: str
    task_b: str
    layer: Layer
    n_items: int
    icl_vs_a: Accuracy
    icl_vs_b: Accuracy
    patched_vs_a: Accuracy
    patched_vs_b: Accuracy
    items: list[ConflictItem]

    def __post_init__(self) -> None:
        totals = {a.total for a in (self.icl_vs_a, self.icl_vs_b, self.patched_vs_a, self.patched_vs_b)}
        if totals != {self.n_items} or len(self.items) != self.n_items:
            raise TvLensError(f"{self.task_a} -> {self.task_b}: n_items {self.n_items}, {len(self.items)} items and "
                              f"accuracies out of {sorted(totals)} disagree: the file was edited or damaged")


@dataclass(frozen=True, kw_only=True)
class ConflictingTasks(Results):
    layer_choice: str
    pairs: list[ConflictPair]
    UNIT: ClassVar[type[Record]] = ConflictPair


# Experiment 4: top tokens of each task's mean θ.

@dataclass(frozen=True)
class TaskTokens(Record):
    """A task's mean θ at its layer read through the lens, as is and minus the mean θ over tasks."""

    task: str
    category: str
    layer: Layer
    n_items: int
    raw: TopTokens
    centred: TopTokens


@dataclass(frozen=True, kw_only=True)
class TopTokensResults(Results):
    k: int
    tasks: list[TaskTokens]


# Experiment 5: clusters of θ (a unit per task: its θs as tensors, its queries here).

@dataclass(frozen=True)
class TaskQueries(Record):
    """The queries of a task's θs, in the order of its tensor of θs."""

    queries: list[str]


@dataclass(frozen=True)
class TaskSpread(Record):
    """How far apart one task's θs are (mean cosine distance)."""

    task: str
    category: str
    n_items: int
    within: float


@dataclass(frozen=True)
class Point(Record):
    """One θ in the t-SNE map."""

    task: str
    query: str
    x: float
    y: float


@dataclass(frozen=True, kw_only=True)
class Clusters(Results):
    layer: Layer
    perplexity: float
    stats: ClusterStats
    stats_centred: ClusterStats
    tasks: list[TaskSpread]
    points: list[Point]
    UNIT: ClassVar[type[Record]] = TaskQueries

    def __post_init__(self) -> None:
        counts: dict[str, int] = {}
        for p in self.points:
            counts[p.task] = counts.get(p.task, 0) + 1
        if counts != {t.task: t.n_items for t in self.tasks if t.n_items}:
            raise TvLensError("points: the points of each task differ from its count of vectors: the file was "
                              "edited or damaged")


# Function vectors beside task vectors (a unit per prompt format and task, after a head-effects unit per
# prompt format and task in the folder `function_vectors_heads`).

@dataclass(frozen=True)
class ZeroShotAndShuffled(Record):
    """An accuracy on the zero-shot prompts and on the shuffled-label prompts."""

    zero_shot: Accuracy
    shuffled: Accuracy


@dataclass(frozen=True)
class TaskVectorRun(Record):
    """The task-level θ on the FV's prompts: its layer, dev accuracy by layer, test accuracies."""

    layer: Layer
    dev_by_layer: PerLayer[Fraction]
    test: Accuracy
    shuffled: Accuracy


@dataclass(frozen=True)
class FVRun(Record):
    """One task in one prompt format: head effects, the FV of each head ranking (`fv[ranking]`,
    "universal" and "task") in each formulation, θ and the controls. Accuracies are on the first answer
    token, over the test queries ICL answers correctly (`queries` "icl_correct"; "all": every query);
    `icl` is ICL's accuracy over the test queries looked at. `aie_all` is the AIE over all validation
    queries (no ICL filter) when the run compared them, else None."""

    format: str
    task: str
    category: str
    n_pairs: int
    prompt_format: dict
    queries: str
    aie: PerLayer[list[float]]
    aie_low: PerLayer[list[float]]
    aie_high: PerLayer[list[float]]
    aie_all: PerLayer[list[float]] | None
    icl_valid: Accuracy
    clean_accuracy: Accuracy
    corrupted_accuracy: Accuracy
    corrupted_prob: Fraction
    heads: dict[str, list[tuple[Layer, int, float]]]
    baseline: Accuracy
    icl: Accuracy
    shuffled_icl: Accuracy
    tv: TaskVectorRun
    heads_patched: dict[str, ZeroShotAndShuffled]
    fv: dict[str, dict[str, FVEvaluation]]
    cosine: dict[str, dict[str, PerLayer[float]]]
    fv_norm: dict[str, dict[str, PerLayer[float]]]
    resid_norm: PerLayer[float]
    top_tokens: dict[str, dict[str, TopTokens]]
    timings: dict
    tokens: int


@dataclass(frozen=True)
class SkippedTask(Record):
    """A task left out of one prompt format, and why (e.g. ICL answers no validation query correctly)."""

    format: str
    task: str
    reason: str


@dataclass(frozen=True, kw_only=True)
class FunctionVectors(Results):
    k: int
    formats: list[str]
    formulations: list[str]
    rankings: list[str]
    queries: str
    runs: list[FVRun]
    universal: dict[str, UniversalHeads]
    skipped: list[SkippedTask]
    UNIT: ClassVar[type[Record]] = FVRun

    def __post_init__(self) -> None:
        for fmt in self.universal:
            if not any(r.format == fmt for r in self.runs):
                raise TvLensError(f"universal.{fmt}: no run of that format: the file was edited or damaged")


# Composition of vectors (a unit per compound task; each task's θ and FV are units of a sub-store).

@dataclass(frozen=True)
class ComponentVectors(Record):
    """One task's θ and FV in the composition experiment: their metadata as a vector file holds it
    (`TaskVector.metadata()`; the tensors are in the unit's tensor file)."""

    task: str
    n_pairs: int
    theta: dict
    fv: dict


@dataclass(frozen=True)
class VectorOnTask(Record):
    """A vector on a compound task's zero-shot prompts: what it is (`tv:task`, or the recipe of a
    composed vector), the layer chosen on the dev items, dev accuracy by layer, test accuracy."""

    recipe: str
    layer: Layer
    dev_by_layer: PerLayer[Fraction]
    test: Accuracy


@dataclass(frozen=True)
class CompositionRun(Record):
    """One compound task: zero-shot, ICL, its own θ and FV and the composed ones, the cosine of own
    and composed at the own vector's layer, and the composed vectors' components (recipe terms)."""

    target: str
    n_pairs: int
    n_test: int
    baseline: Accuracy
    icl: Accuracy
    theta: VectorOnTask
    theta_composed: VectorOnTask
    fv: VectorOnTask
    fv_composed: VectorOnTask
    cosine: dict[str, float]
    components: dict[str, list[dict]]


@dataclass(frozen=True, kw_only=True)
class Composition(Results):
    format: str
    prompt_format: dict
    tasks: list[ComponentVectors]
    compositions: list[CompositionRun]
    UNIT: ClassVar[type[Record]] = CompositionRun


ANALYSES: dict[str, type[Results]] = {
    "main_table": MainTable, "layer_sweep": LayerSweep, "conflicting_tasks": ConflictingTasks,
    "top_tokens": TopTokensResults, "clusters": Clusters, "function_vectors": FunctionVectors,
    "composition": Composition}


def results_from_dict(data) -> Results:
    """The results of the analysis `data` names, read back and checked: the header first (schema
    version, known analysis, model depth), then the body against the analysis's record; a one-line
    ResultsError naming the offending field otherwise."""
    if not isinstance(data, dict):
        raise ResultsError(f"top level: expected an object, got {type(data).__name__}")
    version = data.get("schema_version")
    if isinstance(version, int) and not isinstance(version, bool) and 1 <= version < SCHEMA_VERSION:
        raise ResultsError(f"schema version {version} results lack the identity this tv_lens checks: rerun the "
                           f"analysis into the same run directory (it reuses every finished unit) to rewrite them")
    Results.from_dict({name: data[name] for name in stored_fields(Results) if name in data})
    if data["schema_version"] > SCHEMA_VERSION:
        raise ResultsError(f"schema version {data['schema_version']} is newer than this tv_lens "
                           f"({SCHEMA_VERSION}): upgrade tv_lens")
    if data["analysis"] not in ANALYSES:
        raise ResultsError(f"unknown analysis {data['analysis']!r}: expected one of {', '.join(ANALYSES)}")
    n_layers = data["model"]["n_layers"]
    if n_layers < 1:
        raise ResultsError(f"model.n_layers: expected a positive number of layers, got {n_layers}")
    if data.get("n_layers", n_layers) != n_layers:
        raise ResultsError(f"n_layers: {data['n_layers']} differs from the model's {n_layers}")
    return ANALYSES[data["analysis"]].from_dict(data, n_layers)
