"""report.html: every figure and table of a run in one self-contained page (plotly.js inlined once)."""

from __future__ import annotations

import json
from html import escape

import plotly.graph_objects as go
import plotly.io as pio
from plotly.offline import get_plotlyjs

from tv_lens.plots import visible

TITLES = {"main_table": "1. Main table: baseline, ICL, task vector",
          "layer_sweep": "2. Layer sweep",
          "conflicting_tasks": "3. Conflicting tasks",
          "top_tokens": "4. Top tokens of θ",
          "clusters": "5. Clustering of θ"}
STYLE = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}
td:first-child,th:first-child{text-align:left}td{vertical-align:top}pre{background:#f6f6f6;padding:8px;overflow-x:auto}"""


def table(header: list[str], rows: list[list]) -> str:
    """An HTML table with escaped cells."""
    head = "".join(f"<th>{escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _ci(x: dict) -> str:
    return f"{x['value']:.2f} [{x['ci_low']:.2f}, {x['ci_high']:.2f}]"


def main_table_tables(results: dict) -> str:
    per_task = table(["task", "category", "baseline", "ICL", "task vector", "layer"],
                     [[t["task"], t["category"], _ci(t["baseline"]), _ci(t["icl"]), _ci(t["tv"]), t["best_layer"]]
                      for t in results["tasks"]])
    groups = {**results["summary"]["categories"], "all tasks": results["summary"]["overall"]}
    means = table(["mean over tasks (95% CI)", "tasks", "baseline", "ICL", "task vector", "TV / ICL"],
                  [[name, g["n_tasks"], _ci(g["baseline"]), _ci(g["icl"]), _ci(g["tv"]), _ci(g["tv_over_icl"])]
                   for name, g in groups.items()])
    return per_task + means


def layer_sweep_tables(results: dict) -> str:
    return table(["layer", "mean", "std", "min", "max"],
                 [[i, f"{m:.2f}", f"{s:.2f}", f"{lo:.2f}", f"{hi:.2f}"]
                  for i, (m, s, lo, hi) in enumerate(zip(*(results[k] for k in ("mean", "std", "min", "max"))))])


def conflicting_tables(results: dict) -> str:
    return table(["A (demonstrations) → B (θ)", "layer", "items", "ICL as A", "ICL as B",
                  "patched as A", "patched as B"],
                 [[f"{p['task_a']} → {p['task_b']}", p["layer"], p["n_items"], _ci(p["icl_vs_a"]), _ci(p["icl_vs_b"]),
                   _ci(p["patched_vs_a"]), _ci(p["patched_vs_b"])] for p in results["pairs"]])


def clusters_tables(results: dict) -> str:
    rows = [[kind, results["layer"], s["n_vectors"], s["n_tasks"], f"{s['within']:.4f}", f"{s['between']:.4f}",
             f"{s['silhouette']:.3f}", f"{s['nearest_centroid_accuracy']:.3f}"]
            for kind, s in (("θ", results["stats"]), ("θ − mean θ", results["stats_centred"]))]
    overall = table(["vectors", "layer", "count", "tasks", "cosine distance within task", "between tasks",
                     "silhouette", "nearest-centroid accuracy (leave one out)"], rows)
    per_task = table(["task", "vectors", "mean cosine distance within"],
                     [[t["task"], t["n_items"], f"{t['within']:.4f}"] for t in results["tasks"]])
    return overall + per_task


def top_tokens_tables(results: dict) -> str:
    return table(["task", "layer", "θ", "θ − mean θ over tasks"],
                 [[t["task"], t["layer"], " · ".join(map(visible, t["raw"]["tokens"])),
                   " · ".join(map(visible, t["centred"]["tokens"]))] for t in results["tasks"]])


TABLES = {"main_table": main_table_tables, "layer_sweep": layer_sweep_tables,
          "conflicting_tasks": conflicting_tables, "top_tokens": top_tokens_tables, "clusters": clusters_tables}


def report_html(results: dict[str, dict], figures: dict[str, go.Figure]) -> str:
    """The whole report: provenance, then per analysis its tables and figure, then the settings."""
    first = next(iter(results.values()))
    model = first["model"]
    sections = []
    for name, data in results.items():
        sections.append(f"<h2>{escape(TITLES[name])}</h2>")
        sections.append(TABLES[name](data))
        sections.append(pio.to_html(figures[name], full_html=False, include_plotlyjs=False))
    settings = "".join(f"<h3>{escape(name)}</h3><pre>{escape(json.dumps(d['settings'], indent=1))}</pre>"
                       for name, d in results.items())
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>tv_lens report: {escape(model['model'])}</title>
<script type="text/javascript">{get_plotlyjs()}</script>
<style>{STYLE}</style></head>
<body>
<h1>In-context learning creates task vectors: {escape(model['model'])}</h1>
<p>Model {escape(model['model'])} (weights {escape(model['fingerprint'])}, {model['n_layers']} layers,
d_model {model['d_model']}), seed {first['seed']}, written {escape(first.get('written_at', ''))};
versions: {escape(', '.join(f'{k} {v}' for k, v in first['versions'].items()))}.</p>
{''.join(sections)}
<h2>Settings</h2>
{settings}
</body></html>
"""
