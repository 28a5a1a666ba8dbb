"""report.html: every figure and table of a run in one self-contained page (plotly.js inlined once)."""

from __future__ import annotations

import json
from html import escape

import plotly.graph_objects as go
import plotly.io as pio
from plotly.offline import get_plotlyjs

from tv_lens.report.tables import as_html, as_markdown
from tv_lens.runs.records import Results

TITLES = {"main_table": "1. Main table: baseline, ICL, task vector",
          "layer_sweep": "2. Layer sweep",
          "conflicting_tasks": "3. Conflicting tasks",
          "top_tokens": "4. Top tokens of θ",
          "clusters": "5. Clustering of θ",
          "function_vectors": "6. Function vectors (Todd et al. 2024) beside task vectors",
          "composition": "7. Composition: compound tasks from the vectors of simpler ones"}
STYLE = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}
td:first-child,th:first-child{text-align:left}td{vertical-align:top}pre{background:#f6f6f6;padding:8px;overflow-x:auto}"""


def report_html(results: dict[str, Results], figures: dict[str, dict[str, go.Figure]]) -> str:
    """The whole report: provenance, then per analysis its tables and figures, then the settings."""
    first = next(iter(results.values()))
    model = first.model
    sections = []
    for name, data in results.items():
        sections.append(f"<h2>{escape(TITLES[name])}</h2>")
        sections.append(as_html(data))
        sections += [pio.to_html(fig, full_html=False, include_plotlyjs=False) for fig in figures[name].values()]
    settings = "".join(f"<h3>{escape(name)}</h3><pre>{escape(json.dumps(d.settings, indent=1))}</pre>"
                       for name, d in results.items())
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>tv_lens report: {escape(model.model)}</title>
<script type="text/javascript">{get_plotlyjs()}</script>
<style>{STYLE}</style></head>
<body>
<h1>In-context learning creates task vectors: {escape(model.model)}</h1>
<p>Model {escape(model.model)} (weights {escape(model.fingerprint)}, {model.n_layers} layers,
d_model {model.d_model}), seed {first.seed}, written {escape(first.written_at)};
versions: {escape(', '.join(f'{k} {v}' for k, v in first.versions.items()))}.</p>
{''.join(sections)}
<h2>Settings</h2>
{settings}
</body></html>
"""


def tables_markdown(results: dict[str, Results]) -> str:
    """Every table of a run in Markdown, under the report's section titles (for a README or a paper draft)."""
    first = next(iter(results.values()))
    parts = [f"# {first.model.model} (weights {first.model.fingerprint}, seed {first.seed})"]
    parts += [f"## {TITLES[name]}\n\n{as_markdown(data)}" for name, data in results.items()]
    return "\n\n".join(parts) + "\n"
