"""Plotly figures of the paper's experiments, for notebooks and the figure script.

Each function takes an analysis's results (as `tv_lens.runs.store.load_results` reads them) and, where
natural, the library's own objects (an `EvalResult`, a list of them, t-SNE coordinates); hover shows
task, item, prediction and layer where they apply.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.subplots import make_subplots

from tv_lens.analysis.summary import Estimate
from tv_lens.function_vectors.mediation import HeadEffects, UniversalHeads
from tv_lens.report import tables
from tv_lens.runs.records import (
    Clusters,
    Composition,
    ConflictingTasks,
    FunctionVectors,
    LayerCurve,
    LayerSweep,
    MainTable,
    TopTokensResults,
)
from tv_lens.stats import Accuracy
from tv_lens.task_vectors.evaluation import EvalResult

METHODS = (("baseline", "Baseline (zero-shot)", "#9e9e9e"), ("icl", "ICL", "#1f77b4"),
           ("tv", "Task vector", "#d62728"))
PALETTE = qualitative.Dark24
LAYOUT = dict(template="plotly_white", width=1000, height=560, font=dict(size=13),
              margin=dict(l=60, r=20, t=70, b=60))


def _task_results(results: MainTable | EvalResult | Sequence[EvalResult]) -> list[EvalResult]:
    """The per-task results of a main table, of one EvalResult or of a list of them."""
    if isinstance(results, MainTable):
        return list(results.tasks)
    return [results] if isinstance(results, EvalResult) else list(results)


def _errors(accs: Sequence[Accuracy | Estimate]) -> dict:
    """Asymmetric error bars from each accuracy's CI."""
    return dict(type="data", symmetric=False, array=[a.ci_high - a.value for a in accs],
                arrayminus=[a.value - a.ci_low for a in accs], thickness=1.2, width=3)


def _examples(items: Sequence, key: str, n: int = 3) -> str:
    return "<br>".join(f"{i.query!r} → {getattr(i, key)!r}" for i in items[:n])


def main_table(results: MainTable | EvalResult | Sequence[EvalResult],
               title: str = "Baseline, ICL and task vector accuracy per task") -> go.Figure:
    """The main table as grouped bars: baseline, ICL and task-vector accuracy per task, with 95% intervals.

    A main table's results add per-category and overall means; hover gives the layer and the first test
    predictions.

    Args:
        results: the main-table results (`tv_lens.runs.store.load_results`), one `EvalResult`, or a list.
        title: the figure's title.

    Returns:
        The plotly figure.
    """
    tasks = _task_results(results)
    groups = {}
    if isinstance(results, MainTable):
        groups = {**{f"mean: {c}": g for c, g in results.summary.categories.items()},
                  "mean: all tasks": results.summary.overall}
    fig = go.Figure()
    for key, label, colour in METHODS:
        accs, hovers = [], []
        for t in tasks:
            acc = getattr(t, key)
            hover = (f"<b>{t.task}</b> ({t.category})<br>{label}: {acc.value:.2f} "
                     f"[{acc.ci_low:.2f}, {acc.ci_high:.2f}], {acc.correct}/{acc.total}"
                     f"<br>task-vector layer {t.best_layer}")
            if key != "baseline" and t.test_items:
                hover += "<br>" + _examples(t.test_items, key)
            accs.append(acc)
            hovers.append(hover)
        for name, g in groups.items():
            est = getattr(g, key)
            accs.append(est)
            hovers.append(f"<b>{name}</b> ({g.n_tasks} tasks)<br>{label}: {est.value:.2f} "
                          f"[{est.ci_low:.2f}, {est.ci_high:.2f}]")
        fig.add_bar(x=[t.task for t in tasks] + list(groups), y=[a.value for a in accs], error_y=_errors(accs),
                    name=label, marker_color=colour, hovertext=hovers, hoverinfo="text")
    if groups:
        fig.add_vline(x=len(tasks) - 0.5, line=dict(color="#888", dash="dot", width=1))
    fig.update_layout(barmode="group", title=title, yaxis=dict(title="accuracy", range=[0, 1.05]),
                      xaxis=dict(tickangle=-40), **LAYOUT)
    return fig


def _curves(results: LayerSweep | MainTable | EvalResult | Sequence[EvalResult]) -> list[LayerCurve]:
    """Per-task dev curves of a layer sweep, or of main-table results."""
    if isinstance(results, LayerSweep):
        return list(results.tasks)
    return [LayerCurve.of(r) for r in _task_results(results)]


def _counts(curve: LayerCurve) -> list[str]:
    return [f"{k}/{n}" for k, n in zip(curve.correct, curve.total)]


def _sweep_lines(fig: go.Figure, curves: list[LayerCurve], visible, **cell) -> None:
    """One line per task with a star at its best layer; hover gives layer, accuracy and counts."""
    for i, c in enumerate(curves):
        colour = PALETTE[i % len(PALETTE)]
        fig.add_scatter(x=list(range(len(c.accuracy))), y=c.accuracy, mode="lines+markers", name=c.task,
                        legendgroup=c.task, visible=visible, line=dict(width=1.5, color=colour),
                        marker=dict(size=5, color=colour), customdata=_counts(c),
                        hovertemplate=f"<b>{c.task}</b><br>layer %{{x}}: %{{y:.2f}} (%{{customdata}})"
                                      f"<br>best layer {c.best_layer}<extra></extra>", **cell)
        best = c.best_layer
        fig.add_scatter(x=[best], y=[c.accuracy[best]], mode="markers", showlegend=False, hoverinfo="skip",
                        legendgroup=c.task, visible=visible,
                        marker=dict(symbol="star", size=13, color=colour, line=dict(width=1, color="black")), **cell)


def layer_sweep(results: LayerSweep | MainTable | EvalResult | Sequence[EvalResult],
                title: str = "Task-vector dev accuracy by layer", shown: int = 6) -> go.Figure:
    """The layer sweep: dev accuracy of θ patched at each layer, the best layer starred.

    With several tasks: the mean ± std over tasks with one line per task, beside a tasks × layers heatmap.

    Args:
        results: the layer-sweep or main-table results, one `EvalResult`, or a list.
        title: the figure's title.
        shown: with more tasks than this, the per-task lines start hidden (click the legend).

    Returns:
        The plotly figure.
    """
    curves = _curves(results)
    table = np.array([c.accuracy for c in curves], dtype=float)
    layers = list(range(table.shape[1]))
    axis_title = "layer L (blocks.L.hook_resid_post)"
    if len(curves) == 1:
        fig = go.Figure()
        _sweep_lines(fig, curves, True)
        fig.update_layout(title=title, xaxis=dict(title=axis_title, dtick=1, range=[-0.5, len(layers) - 0.5]),
                          yaxis=dict(title="dev accuracy", range=[-0.02, 1.02]), **LAYOUT)
        return fig
    fig = make_subplots(rows=1, cols=2, column_widths=[0.5, 0.5], horizontal_spacing=0.16,
                        subplot_titles=("mean over tasks ± 1 std, and per task", "per task"))
    left, right = dict(row=1, col=1), dict(row=1, col=2)
    mean, std = table.mean(0), table.std(0)
    band = list(np.clip(mean + std, 0, 1)) + list(np.clip(mean - std, 0, 1))[::-1]
    fig.add_scatter(x=layers + layers[::-1], y=band, fill="toself", fillcolor="rgba(0,0,0,0.1)",
                    line=dict(width=0), hoverinfo="skip", name="mean ± std", **left)
    fig.add_scatter(x=layers, y=mean, mode="lines", line=dict(color="black", width=4), name="mean over tasks",
                    customdata=std, hovertemplate="mean over tasks<br>layer %{x}: %{y:.2f} ± %{customdata:.2f}"
                                                  "<extra></extra>", **left)
    _sweep_lines(fig, curves, True if len(curves) <= shown else "legendonly", **left)
    names = [c.task for c in curves]
    fig.add_heatmap(z=table, x=layers, y=names, zmin=0, zmax=1, colorscale="Viridis",
                    customdata=[_counts(c) for c in curves],
                    colorbar=dict(title=dict(text="accuracy", side="right"), thickness=12, x=1.0, len=0.9),
                    hovertemplate="<b>%{y}</b><br>layer %{x}: %{z:.2f} (%{customdata})<extra></extra>", **right)
    fig.add_scatter(x=[c.best_layer for c in curves], y=names, mode="markers", name="best layer",
                    marker=dict(symbol="star", size=10, color="white", line=dict(width=1, color="black")),
                    hovertemplate="<b>%{y}</b><br>best layer %{x}<extra></extra>", **right)
    fig.update_xaxes(title=axis_title, dtick=2, range=[-0.5, len(layers) - 0.5])
    fig.update_yaxes(title="dev accuracy", range=[-0.02, 1.02], **left)
    fig.update_yaxes(autorange="reversed", **right)
    fig.update_layout(title=title, legend=dict(x=1.1, font=dict(size=11), tracegroupgap=0),
                      **{**LAYOUT, "width": 1200, "height": 600})
    return fig


def conflicting_tasks(results: ConflictingTasks,
                      title: str = "Conflicting tasks: demonstrations of A, θ of B") -> go.Figure:
    """Conflicting tasks: per pair, accuracy scored as A and as B, for plain ICL and with θ_B patched in.

    Args:
        results: the conflicting-tasks results.
        title: the figure's title.

    Returns:
        The plotly figure.
    """
    bars = (("icl_vs_a", "ICL, scored as A", "#1f77b4"), ("icl_vs_b", "ICL, scored as B", "#aec7e8"),
            ("patched_vs_a", "θ_B patched, scored as A", "#ff9896"),
            ("patched_vs_b", "θ_B patched, scored as B", "#d62728"))
    pairs = results.pairs
    fig = go.Figure()
    for key, label, colour in bars:
        accs = [getattr(p, key) for p in pairs]
        pred = "icl" if key.startswith("icl") else "patched"
        hovers = [f"<b>{p.task_a} → {p.task_b}</b>, layer {p.layer}<br>{label}: {a.value:.2f} "
                  f"[{a.ci_low:.2f}, {a.ci_high:.2f}], {a.correct}/{a.total}<br>"
                  + _examples(p.items, pred) for p, a in zip(pairs, accs)]
        fig.add_bar(x=[f"{p.task_a} → {p.task_b}" for p in pairs], y=[a.value for a in accs],
                    error_y=_errors(accs), name=label, marker_color=colour, hovertext=hovers, hoverinfo="text")
    fig.update_layout(barmode="group", title=title, yaxis=dict(title="accuracy", range=[0, 1.05]), **LAYOUT)
    return fig


def top_tokens_table(results: TopTokensResults, n: int = 8,
                     title: str = "Top tokens of the mean task vector") -> go.Figure:
    """A table of what θ promotes: task, layer, its top tokens and those of θ minus the mean θ over tasks.

    Args:
        results: the top-tokens results.
        n: tokens shown per cell.
        title: the figure's title.

    Returns:
        The plotly figure.
    """
    (table,) = tables.top_tokens(results, n)
    fig = go.Figure(go.Table(
        columnwidth=[110, 40, 420, 420],
        header=dict(values=list(table.header), fill_color="#e8e8e8", align="left"),
        cells=dict(values=[list(column) for column in zip(*table.rows)], align="left", height=40, font=dict(size=11))))
    fig.update_layout(title=title, **{**LAYOUT, "height": 130 + 44 * len(table.rows)})
    return fig


def tsne_scatter(results: Clusters | None = None, *, points=None, labels: Sequence[str] = (),
                 queries: Sequence[str] = (), title: str = "t-SNE of task vectors") -> go.Figure:
    """Task vectors in 2-D (t-SNE), coloured by task.

    Give the clusters' results, or `points` with their `labels`.

    Args:
        results: the clusters' results; they bring the points, labels, queries and the title.
        points (ArrayLike | None): [n, 2] coordinates, without `results`.
        labels: the task of each point.
        queries: the query of each point, for the hover; optional.
        title: the figure's title, without `results`.

    Returns:
        The plotly figure.
    """
    if results is not None:
        points = [(p.x, p.y) for p in results.points]
        labels = [p.task for p in results.points]
        queries = [p.query for p in results.points]
        s = results.stats
        title = (f"t-SNE of task vectors at layer {results.layer}: silhouette {s.silhouette:.2f}, "
                 f"nearest-centroid accuracy {s.nearest_centroid_accuracy:.2f}")
    points = np.asarray(points, dtype=float)
    queries = list(queries) or [""] * len(points)
    fig = go.Figure()
    for n, task in enumerate(dict.fromkeys(labels)):
        rows = [i for i, label in enumerate(labels) if label == task]
        fig.add_scatter(x=points[rows, 0], y=points[rows, 1], mode="markers", name=task,
                        marker=dict(size=6, color=PALETTE[n % len(PALETTE)]),
                        customdata=[queries[i] for i in rows],
                        hovertemplate=f"<b>{task}</b><br>query %{{customdata}}<extra></extra>")
    fig.update_layout(title=title, xaxis=dict(title="t-SNE 1", showticklabels=False),
                      yaxis=dict(title="t-SNE 2", showticklabels=False), **LAYOUT)
    return fig


def head_effects(effects: HeadEffects | UniversalHeads, top: int = 10, title: str | None = None) -> go.Figure:
    """The layer × head heatmap of average indirect effects (Todd et al. 2024), the top heads outlined.

    Hover gives the head, its AIE and the 95% interval.

    Args:
        effects: one task's `HeadEffects`, or a `UniversalHeads` (the mean over tasks).
        top: how many of the largest-AIE heads are outlined.
        title: the figure's title; default one naming the task.

    Returns:
        The plotly figure.
    """
    data = effects.to_dict()
    aie = np.asarray(data["aie"], dtype=float)
    low, high = np.asarray(data["aie_low"], dtype=float), np.asarray(data["aie_high"], dtype=float)
    n_layers, n_heads = aie.shape
    bound = max(float(np.abs(aie).max()), 1e-9)
    text = [[f"layer {layer} head {head}<br>AIE {aie[layer, head]:+.4f}<br>95% interval "
             f"[{low[layer, head]:+.4f}, {high[layer, head]:+.4f}]" for head in range(n_heads)]
            for layer in range(n_layers)]
    fig = go.Figure(go.Heatmap(z=aie.T, x=list(range(n_layers)), y=list(range(n_heads)), text=np.array(text).T,
                               hoverinfo="text", colorscale="RdBu", zmid=0, zmin=-bound, zmax=bound,
                               colorbar=dict(title=dict(text="AIE", side="right"), thickness=12)))
    best = np.argsort(-aie.flatten(), kind="stable")[:top]
    fig.add_scatter(x=[i // n_heads for i in best], y=[i % n_heads for i in best], mode="markers",
                    name=f"top {len(best)} heads", hoverinfo="skip",
                    marker=dict(symbol="square-open", size=16, color="black", line=dict(width=2)))
    default = f"Average indirect effect of each head{': ' + data['task'] if data.get('task') else ''}"
    fig.update_layout(title=title or default, xaxis=dict(title="layer", dtick=1),
                      yaxis=dict(title="head", dtick=1), legend=dict(orientation="h", y=-0.25),
                      **{**LAYOUT, "height": 200 + 40 * n_heads})
    return fig


def fv_layer_curves(curves: Mapping[str, Sequence[float]], baselines: dict[str, float] | None = None,
                    title: str = "Accuracy by layer: function vector and task vector") -> go.Figure:
    """Accuracy by layer of named curves (e.g. a function vector added, θ written in), with baseline lines.

    Args:
        curves: name to the accuracy at each layer.
        baselines: name to an accuracy drawn as a horizontal line (e.g. zero-shot, ICL); None for none.
        title: the figure's title.

    Returns:
        The plotly figure.
    """
    fig = go.Figure()
    for i, (name, values) in enumerate(curves.items()):
        fig.add_scatter(x=list(range(len(values))), y=list(values), mode="lines+markers", name=name,
                        line=dict(color=PALETTE[i % len(PALETTE)], width=2),
                        hovertemplate=f"<b>{name}</b><br>layer %{{x}}: %{{y:.2f}}<extra></extra>")
    for i, (name, value) in enumerate((baselines or {}).items()):
        fig.add_hline(y=value, line=dict(color="#888", dash=("dot", "dash", "dashdot")[i % 3], width=1),
                      annotation_text=f"{name} {value:.2f}",
                      annotation_position=("top left", "top right", "bottom right")[i % 3])
    fig.update_layout(title=title, xaxis=dict(title="layer L (blocks.L.hook_resid_post)", dtick=1),
                      yaxis=dict(title="accuracy", range=[-0.02, 1.02]), **LAYOUT)
    return fig


def _mean_curve(curves: Sequence[Sequence[float]]) -> list[float]:
    return np.asarray(curves, dtype=float).mean(0).tolist()


def function_vectors(results: FunctionVectors) -> dict[str, go.Figure]:
    """The figures of the function-vector results, per prompt format.

    `heads_<format>`: the heatmap of the AIE averaged over tasks, the universal set outlined.
    `layers_<format>`: the mean dev accuracy by layer of each function vector (each head ranking and
    formulation, added to zero-shot and to shuffled-label prompts) next to θ written in zero-shot, with
    the zero-shot, ICL and shuffled-ICL accuracies as lines.

    Args:
        results: the function-vector results.

    Returns:
        Name to figure.
    """
    figures = {}
    for fmt in results.formats:
        runs = tables.runs_in(results, fmt)
        if fmt in results.universal:
            universal = results.universal[fmt]
            figures[f"heads_{fmt}"] = head_effects(universal, top=results.k,
                                                   title=f"Average indirect effect per head, mean over "
                                                         f"{len(universal.tasks)} tasks ({fmt} prompts)")
        if not runs:
            continue
        curves = {"θ replaced, zero-shot": _mean_curve([r.tv.dev_by_layer for r in runs])}
        for ranking in results.rankings:
            for f in results.formulations:
                for kind, label in (("zero_shot", "zero-shot"), ("shuffled", "shuffled labels")):
                    curves[f"FV {f} ({tables.RANKING_NAMES[ranking]}) added, {label}"] = _mean_curve(
                        [[a.value for a in getattr(r.fv[ranking][f], f"{kind}_by_layer")] for r in runs])
        baselines = {name: float(np.mean([getattr(r, key).value for r in runs]))
                     for key, name in (("baseline", "zero-shot"), ("icl", "ICL"), ("shuffled_icl", "shuffled ICL"))}
        figures[f"layers_{fmt}"] = fv_layer_curves(
            curves, baselines, title=f"Dev accuracy by layer, mean over {len(runs)} tasks ({fmt} prompts)")
    return figures


def composition(results: Composition,
                title: str = "Composed vectors: v(compound) ≈ v(pick) + v(other pick, transform) − v(other pick)"
                ) -> go.Figure:
    """Composition: per compound task, zero-shot, ICL, and its own and composed θ and FV, with 95% intervals.

    Hover gives each vector's recipe and layer.

    Args:
        results: the composition results.
        title: the figure's title.

    Returns:
        The plotly figure.
    """
    bars = (("baseline", "Zero-shot", "#9e9e9e"), ("icl", "ICL", "#1f77b4"), ("theta", "θ own", "#d62728"),
            ("theta_composed", "θ composed", "#ff9896"), ("fv", "FV own", "#2ca02c"),
            ("fv_composed", "FV composed", "#98df8a"))
    runs = results.compositions
    fig = go.Figure()
    for key, label, colour in bars:
        accs = [getattr(r, key) if key in ("baseline", "icl") else getattr(r, key).test for r in runs]
        hovers = [f"<b>{r.target}</b><br>{label}: {a.value:.2f} [{a.ci_low:.2f}, {a.ci_high:.2f}], "
                  f"{a.correct}/{a.total}"
                  + ("" if key in ("baseline", "icl") else
                     f"<br>{getattr(r, key).recipe}, layer {getattr(r, key).layer}") for r, a in zip(runs, accs)]
        fig.add_bar(x=[r.target for r in runs], y=[a.value for a in accs], error_y=_errors(accs), name=label,
                    marker_color=colour, hovertext=hovers, hoverinfo="text")
    fig.update_layout(barmode="group", title=title, yaxis=dict(title="test accuracy", range=[0, 1.05]), **LAYOUT)
    return fig
