"""Figures of a run directory: interactive HTML (plotly.js inlined, works offline), static PNG
(kaleido, the extra `tv-lens[png]`, which needs Chrome or Chromium), one report.html with every figure
and table, and every table in Markdown (tables.md). Only the run's own results are shown
(`tv_lens.runs.reading`: results of another model or seed, copied in or left behind, are left out with one
line each), and every file is written atomically: a kill or a full disk never leaves a half-written page,
and a symlink in the output folder is replaced, never followed.

    tv-lens figures runs/gemma --out figures/gemma-3-270m
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from pathlib import Path

import plotly.graph_objects as go
import plotly.io as pio

from tv_lens.files import FileWriteError, check_writable_folder, write_atomically, writing_atomically
from tv_lens.report import plots
from tv_lens.runs.reading import Configuration, read_run
from tv_lens.runs.records import Results

from .report import report_html, tables_markdown

FIGURES = {
    "main_table": plots.main_table,
    "layer_sweep": plots.layer_sweep,
    "conflicting_tasks": plots.conflicting_tasks,
    "top_tokens": plots.top_tokens_table,
    "clusters": plots.tsne_scatter,
    "function_vectors": plots.function_vectors,
    "composition": plots.composition,
}
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")


def load_run(run_dir: Path, like: Configuration | None = None) -> dict[str, Results]:
    """The checked results of every analysis of `run_dir` that are this run's (of `like`'s configuration when
    given), in the paper's order; each one left out is said in one line on stderr."""
    run = read_run(run_dir, tuple(FIGURES), like)
    for reason in run.left_out.values():
        print(f"left out: {reason}", file=sys.stderr)
    if not run.results:
        if run.left_out:
            raise ValueError(f"no results of {run_dir} can be shown (each is left out, as said above): rerun "
                             f"`tv-lens reproduce --out {run_dir}`")
        raise FileNotFoundError(f"no results in {run_dir}: run `tv-lens reproduce --out {run_dir}` first")
    return run.results


def kaleido_installed() -> bool:
    """Whether kaleido, which renders the PNGs, is installed (it is the extra `tv-lens[png]`)."""
    return importlib.util.find_spec("kaleido") is not None


def find_browser() -> str | None:
    """The Chrome/Chromium kaleido would use (BROWSER_PATH, or the first on PATH)."""
    return os.environ.get("BROWSER_PATH") or next(filter(None, map(shutil.which, BROWSERS)), None)


def named_figures(name: str, data: Results) -> dict[str, go.Figure]:
    """The figures of one analysis by file stem (`name`, or `name_<part>` where it makes several)."""
    made = FIGURES[name](data)
    return {f"{name}_{part}": fig for part, fig in made.items()} if isinstance(made, dict) else {name: made}


def write_pngs(figures: dict[str, go.Figure], out: Path) -> list[Path]:
    """One PNG per figure at its layout size; none, with a one-line reason, without kaleido or a browser."""
    if not kaleido_installed():
        print("PNGs skipped: kaleido is not installed (pip install 'tv-lens[png]')", file=sys.stderr)
        return []
    if find_browser() is None:
        print("PNGs skipped: no Chrome/Chromium found (install one, e.g. `apt-get install -y chromium`, "
              "or set BROWSER_PATH)", file=sys.stderr)
        return []
    paths = [out / f"{name}.png" for name in figures]
    figs = list(figures.values())
    try:
        with writing_atomically(paths) as temporaries:  # kaleido writes the files itself: to temporary names
            pio.write_images(figs, temporaries, width=[f.layout.width for f in figs],
                             height=[f.layout.height for f in figs])
    except FileWriteError:
        raise
    except Exception as err:  # kaleido reports a browser that fails to start in many ways
        print(f"PNGs skipped: kaleido could not render with {find_browser()}: {err}".splitlines()[0], file=sys.stderr)
        return []
    return paths


def make(run_dir: str | Path, out: str | Path | None = None, png: bool = True,
         like: Configuration | None = None) -> list[Path]:
    """Write `<name>.html` (and `<name>.png`) per analysis, `tables.md` and `report.html` into `out`
    (default `<run_dir>/figures`), each atomically; returns the files written, the report last. `like`: the
    configuration of the run just made (default: the main table's)."""
    run_dir = Path(run_dir)
    out = Path(out) if out is not None else run_dir / "figures"
    results = load_run(run_dir, like)
    check_writable_folder(out)
    by_analysis = {name: named_figures(name, data) for name, data in results.items()}
    figures = {stem: fig for named in by_analysis.values() for stem, fig in named.items()}
    written = []
    for name, fig in figures.items():
        written.append(write_atomically(out / f"{name}.html", fig.to_html(include_plotlyjs=True).encode()))
    if png:
        written += write_pngs(figures, out)
    written.append(write_atomically(out / "tables.md", tables_markdown(results).encode()))
    written.append(write_atomically(out / "report.html", report_html(results, by_analysis).encode()))
    return written
