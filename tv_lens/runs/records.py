"""The results of each analysis as typed records: one dataclass per results file (its header, then
its body, in the order written) and one per unit of work. `to_dict` gives the JSON written,
`from_dict` reads it back checked against the field types (see `tv_lens.codec`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from tv_lens.analysis.geometry import ClusterStats
from tv_lens.analysis.lens import TopTokens
from tv_lens.analysis.summary import GroupSummary
from tv_lens.codec import Fraction, Layer, PerLayer, Record, ResultsError, stored_fields
from tv_lens.function_vectors.mediation import UniversalHeads
from tv_lens.function_vectors.vector import FVEvaluation
from tv_lens.stats import Accuracy
from tv_lens.task_vectors.evaluation import EvalResult

SCHEMA_VERSION = 2


@dataclass(frozen=True)
class ModelInfo(Record):
    """The model a result was computed with: its spec, weights fingerprint and shape."""

    model: str
    fingerprint: str
    n_layers: int
    d_model: int


@dataclass(frozen=True, kw_only=True)
class Results(Record):
    """What every results file starts with; each analysis's results add their body. `UNIT` is the
    type of the analysis's units of work (None: it has none)."""

    schema_version: int
    analysis: str
    model: ModelInfo
    settings: dict
    seed: int
    versions: dict
    written_at: str
    UNIT: ClassVar[type[Record] | None] = None


# Experiment 1: the main table (a unit per task: its EvalResult).

@dataclass(frozen=True)
class Summary(Record):
    """Means over all tasks and per category (in order of first appearance)."""

    overall: GroupSummary
    categories: dict[str, GroupSummary]


@dataclass(frozen=True, kw_only=True)
class MainTable(Results):
    tasks: list[EvalResult]
    summary: Summary
    UNIT: ClassVar[type[Record]] = EvalResult


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

    @classmethod
    def of(cls, result: EvalResult) -> LayerCurve:
        by_layer = result.dev_accuracy_by_layer
        return cls(result.task, result.category, result.best_layer, [a.value for a in by_layer],
                   [a.correct for a in by_layer], [a.total for a in by_layer])


@dataclass(frozen=True, kw_only=True)
class LayerSweep(Results):
    n_layers: int
    tasks: list[LayerCurve]
    mean: PerLayer[float]
    std: PerLayer[float]
    min: PerLayer[float]
    max: PerLayer[float]


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
