"""The tables of each analysis's results as rows of text cells, rendered both as text (the terminal)
and as HTML (report.html): one place decides what a table shows."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from html import escape
from typing import Any

from tv_lens.analysis.summary import Estimate
from tv_lens.runs.records import (
    Clusters,
    Composition,
    ConflictingTasks,
    FunctionVectors,
    FVRun,
    LayerSweep,
    MainTable,
    Results,
    TopTokensResults,
)
from tv_lens.stats import Accuracy


@dataclass(frozen=True)
class Table:
    """A header and rows of cells, each cell already formatted."""

    header: Sequence[str]
    rows: Sequence[Sequence[str]]

    def text(self) -> str:
        """Columns padded to their widest cell: the first one aligned left, the others right."""
        lines = [self.header, *self.rows]
        widths = [max(len(str(line[i])) for line in lines) for i in range(len(self.header))]
        return "\n".join(" ".join(f"{c:<{w}}" if i == 0 else f"{c:>{w}}" for i, (c, w) in
                                  enumerate(zip(map(str, line), widths))).rstrip() for line in lines)

    def html(self) -> str:
        """An HTML table with escaped cells."""
        head = "".join(f"<th>{escape(str(h))}</th>" for h in self.header)
        body = "".join("<tr>" + "".join(f"<td>{escape(str(c))}</td>" for c in row) + "</tr>" for row in self.rows)
        return f"<table><tr>{head}</tr>{body}</table>"

    def markdown(self) -> str:
        """A Markdown (GitHub) table, `|` in cells escaped: what the README's tables are pasted from."""
        def line(cells: Sequence[str]) -> str:
            return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"
        return "\n".join([line(self.header), "|" + "---|" * len(self.header), *map(line, self.rows)])


def visible(token: str) -> str:
    """A token with its whitespace made visible (␣ for space, ⏎ for a line break)."""
    return token.replace(" ", "␣").replace("\n", "⏎").replace("\t", "⇥")


def ci(x: Accuracy | Estimate) -> str:
    """An accuracy or estimate with its 95% CI: '0.52 [0.38, 0.66]'."""
    return f"{x.value:.2f} [{x.ci_low:.2f}, {x.ci_high:.2f}]"


def main_table(results: MainTable) -> list[Table]:
    """Per task: baseline, ICL and task vector with CIs and the layer; then the means per category and overall."""
    per_task = Table(["task", "category", "baseline", "ICL", "task vector", "layer"],
                     [[t.task, t.category, ci(t.baseline), ci(t.icl), ci(t.tv), str(t.best_layer)]
                      for t in results.tasks])
    groups = {**results.summary.categories, "all tasks": results.summary.overall}
    means = Table(["mean over tasks (95% CI)", "tasks", "baseline", "ICL", "task vector", "TV / ICL"],
                  [[name, str(g.n_tasks), ci(g.baseline), ci(g.icl), ci(g.tv), ci(g.tv_over_icl)]
                   for name, g in groups.items()])
    return [per_task, means]


def layer_sweep(results: LayerSweep) -> list[Table]:
    """Dev accuracy of the task vector per layer: mean, std, min and max over tasks."""
    columns = zip(results.mean, results.std, results.min, results.max)
    return [Table(["layer", "mean", "std", "min", "max"],
                  [[str(i), *(f"{v:.2f}" for v in values)] for i, values in enumerate(columns)])]


def conflicting_tasks(results: ConflictingTasks) -> list[Table]:
    """Per pair: ICL and the patched run, each scored as task A and as task B."""
    return [Table(["A (demonstrations) → B (θ)", "layer", "items", "ICL as A", "ICL as B",
                   "patched as A", "patched as B"],
                  [[f"{p.task_a} → {p.task_b}", str(p.layer), str(p.n_items), ci(p.icl_vs_a),
                    ci(p.icl_vs_b), ci(p.patched_vs_a), ci(p.patched_vs_b)] for p in results.pairs])]


def top_tokens(results: TopTokensResults, shown: int | None = 8) -> list[Table]:
    """Per task: its layer and the first `shown` top tokens (None: all) of θ and of θ minus the mean θ."""
    def tokens(t) -> str:
        return " · ".join(map(visible, t.tokens[:shown]))

    return [Table(["task", "layer", "θ", "θ − mean θ over tasks"],
                  [[t.task, str(t.layer), tokens(t.raw), tokens(t.centred)] for t in results.tasks])]


def clusters(results: Clusters) -> list[Table]:
    """How well θ separates by task, as is and centred; then each task's spread."""
    overall = Table(["vectors", "layer", "count", "tasks", "cosine distance within task", "between tasks",
                     "silhouette", "nearest-centroid accuracy (leave one out)"],
                    [[kind, str(results.layer), str(s.n_vectors), str(s.n_tasks), f"{s.within:.4f}",
                      f"{s.between:.4f}", f"{s.silhouette:.3f}", f"{s.nearest_centroid_accuracy:.3f}"]
                     for kind, s in (("θ", results.stats), ("θ − mean θ", results.stats_centred))])
    per_task = Table(["task", "vectors", "mean cosine distance within"],
                     [[t.task, str(t.n_items), f"{t.within:.4f}"] for t in results.tasks])
    return [overall, per_task]


def runs_in(results: FunctionVectors, fmt: str) -> list[FVRun]:
    """The function-vector runs of one prompt format."""
    return [r for r in results.runs if r.format == fmt]


RANKING_NAMES = {"universal": "universal heads", "task": "task's own heads"}


def side_by_side(results: FunctionVectors, fmt: str, formulation: str | None = None) -> list[list]:
    """Rows of the side-by-side table of one prompt format: task, test queries, zero-shot, ICL,
    shuffled ICL, θ (layer), then per head ranking the FV zero-shot and shuffled (layer); then the mean."""
    formulation = formulation or results.formulations[0]
    rows, sums = [], []
    for r in runs_in(results, fmt):
        fvs = [r.fv[ranking][formulation] for ranking in results.rankings]
        values = [r.baseline.value, r.icl.value, r.shuffled_icl.value, r.tv.test.value,
                  *(v for fv in fvs for v in (fv.zero_shot.value, fv.shuffled.value))]
        layers = [r.tv.layer, *(layer for fv in fvs for layer in (fv.zero_shot_layer, fv.shuffled_layer))]
        sums.append(values)
        rows.append([r.task, str(r.baseline.total), *(f"{v:.2f}" for v in values[:3]),
                     *(f"{v:.2f} ({layer})" for v, layer in zip(values[3:], layers))])
    if sums:
        mean = [sum(column) / len(sums) for column in zip(*sums)]
        rows.append([f"mean ({len(sums)} tasks)", "", *(f"{v:.2f}" for v in mean)])
    return rows


def side_by_side_header(results: FunctionVectors, fmt: str) -> list[str]:
    return [f"{fmt} prompts: task", "test queries", "zero-shot", "ICL", "shuffled ICL", "θ replace (layer)",
            *(f"FV {RANKING_NAMES[r]} {kind} (layer)" for r in results.rankings for kind in ("zero-shot", "shuffled"))]


def formulation_means(results: FunctionVectors, fmt: str) -> list[list]:
    """Per head ranking and formulation: mean over tasks of the FV's test accuracy, zero-shot and
    shuffled; then per ranking the control that patches its heads' outputs with ā in the prompt itself."""
    runs = runs_in(results, fmt)
    if not runs:
        return []
    kinds = ("zero_shot", "shuffled")

    def mean(values) -> str:
        return f"{sum(values) / len(runs):.2f}"

    rows = [[f"FV {f} (added), {RANKING_NAMES[ranking]}",
             *(mean(getattr(r.fv[ranking][f], kind).value for r in runs) for kind in kinds)]
            for ranking in results.rankings for f in results.formulations]
    rows += [[f"top {results.k} heads patched with ā, {RANKING_NAMES[ranking]}",
              *(mean(getattr(r.heads_patched[ranking], kind).value for r in runs) for kind in kinds)]
             for ranking in results.rankings]
    return rows


def _heads(heads) -> str:
    return " ".join(f"L{layer}H{head} {aie:+.3f}" for layer, head, aie in heads)


def head_rows(results: FunctionVectors, fmt: str) -> list[list]:
    """The universal set, then per task its own top heads, how many of them are in the universal set,
    and the top tokens of its FV (first ranking and formulation)."""
    universal = results.universal.get(fmt)
    if universal is None:
        return []
    chosen = {(layer, head) for layer, head, _ in universal.top_heads(results.k)}
    ranking, formulation = results.rankings[0], results.formulations[0]
    rows = [[f"universal set (mean over {len(universal.tasks)} tasks)", _heads(universal.top_heads(results.k)), "", ""]]
    for r in runs_in(results, fmt):
        own = r.heads.get("task") or _top_of(r.aie, results.k)
        rows.append([r.task, _heads(own), f"{sum((layer, head) in chosen for layer, head, _ in own)}/{len(own)}",
                     " · ".join(map(visible, r.top_tokens[ranking][formulation].tokens[:10]))])
    return rows


def _top_of(aie: Sequence[Sequence[float]], k: int) -> list[tuple[int, int, float]]:
    flat = sorted(((v, -layer, -head) for layer, row in enumerate(aie) for head, v in enumerate(row)), reverse=True)
    return [(-layer, -head, v) for v, layer, head in flat[:k]]


def _correlation(a: Sequence[Sequence[float]], b: Sequence[Sequence[float]]) -> float:
    x = [v for row in a for v in row]
    y = [v for row in b for v in row]
    mx, my = sum(x) / len(x), sum(y) / len(y)
    cov = sum((u - mx) * (w - my) for u, w in zip(x, y))
    norm = (sum((u - mx) ** 2 for u in x) * sum((w - my) ** 2 for w in y)) ** 0.5
    return cov / norm if norm else float("nan")


def query_filter_rows(results: FunctionVectors, fmt: str) -> list[list]:
    """Per task with both: ICL on the validation queries looked at, the top head by AIE on the queries ICL
    answers correctly and its AIE on all validation queries, the top head on all, and the correlation
    of the two AIE matrices."""
    rows = []
    for r in runs_in(results, fmt):
        if r.aie_all is None:
            continue
        (layer, head, aie), = _top_of(r.aie, 1)
        (layer_all, head_all, aie_all), = _top_of(r.aie_all, 1)
        rows.append([r.task, f"{r.icl_valid.value:.2f} ({r.icl_valid.correct}/{r.icl_valid.total})",
                     f"L{layer}H{head} {aie:+.3f}", f"{r.aie_all[layer][head]:+.3f}",
                     f"L{layer_all}H{head_all} {aie_all:+.3f}", f"{_correlation(r.aie, r.aie_all):.2f}"])
    return rows


def function_vectors(results: FunctionVectors) -> list[Table]:
    """Per prompt format: the side-by-side test accuracies, each condition's mean over tasks, the
    heads (universal set and each task's own), the AIE with and without the ICL-correct filter, and
    the tasks skipped (each table only where it has rows)."""
    tables = []
    for fmt in results.formats:
        made = [
            Table(side_by_side_header(results, fmt), side_by_side(results, fmt)),
            Table([f"{fmt} prompts: condition", "zero-shot (mean over tasks)", "shuffled labels"],
                  formulation_means(results, fmt)),
            Table([f"{fmt} prompts: task", f"top {results.k} heads (layer, head, AIE)", "in universal set",
                   f"FV top tokens ({RANKING_NAMES[results.rankings[0]]}, {results.formulations[0]})"],
                  head_rows(results, fmt)),
            Table([f"{fmt} prompts: task", "ICL on validation queries", "top head, ICL-correct queries",
                   "its AIE on all queries", "top head, all queries", "corr. of the AIEs"],
                  query_filter_rows(results, fmt)),
            Table([f"{fmt} prompts: task skipped", "why"],
                  [[s.task, s.reason] for s in results.skipped if s.format == fmt]),
        ]
        tables += [table for table in made if table.rows]
    return tables


COMPOSED = ("theta", "theta_composed", "fv", "fv_composed")


def composition(results: Composition) -> list[Table]:
    """Per compound task: zero-shot, ICL, own and composed θ and FV (test accuracy, layer), the cosine
    of own and composed; then the mean over compound tasks; then each composed vector's recipe."""
    rows, sums = [], []
    for r in results.compositions:
        values = [r.baseline.value, r.icl.value, *(getattr(r, name).test.value for name in COMPOSED)]
        sums.append(values)
        rows.append([r.target, f"{values[0]:.2f}", f"{values[1]:.2f}",
                     *(f"{getattr(r, name).test.value:.2f} ({getattr(r, name).layer})" for name in COMPOSED),
                     f"{r.cosine['theta']:+.2f}", f"{r.cosine['fv']:+.2f}"])
    if sums:
        rows.append([f"mean ({len(sums)} tasks)", *(f"{sum(c) / len(sums):.2f}" for c in zip(*sums)), "", ""])
    accuracies = Table(["compound task", "zero-shot", "ICL", "θ own (layer)", "θ composed (layer)", "FV own (layer)",
                        "FV composed (layer)", "cos θ own, composed", "cos FV own, composed"], rows)
    recipes = Table(["compound task", "composed θ", "composed FV"],
                    [[r.target, r.theta_composed.recipe, r.fv_composed.recipe] for r in results.compositions])
    return [accuracies, recipes]


# each takes the results of its own analysis (a subclass of Results)
TABLES: dict[str, Callable[[Any], list[Table]]] = {
    "main_table": main_table, "layer_sweep": layer_sweep, "conflicting_tasks": conflicting_tasks,
    "top_tokens": top_tokens, "clusters": clusters, "function_vectors": function_vectors, "composition": composition}


def as_text(results: Results) -> str:
    """The tables of an analysis's results, as text."""
    return "\n\n".join(t.text() for t in TABLES[results.analysis](results))


def as_markdown(results: Results) -> str:
    """The tables of an analysis's results, as Markdown."""
    return "\n\n".join(t.markdown() for t in TABLES[results.analysis](results))


def as_html(results: Results) -> str:
    """The tables of an analysis's results, as HTML."""
    return "".join(t.html() for t in TABLES[results.analysis](results))
