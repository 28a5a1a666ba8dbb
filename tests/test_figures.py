"""Figures from a tiny run: HTML works offline, PNGs are small, report.html renders every plot in
headless Chromium without console errors."""

import re
import subprocess

import pytest
import torch

from analyses import clusters, composition, conflicting_tasks, function_vectors, reproduce
from figures import make as figures
from tv_lens.analysis.geometry import tsne_2d
from tv_lens.cli.main import main
from tv_lens.report import plots
from tv_lens.report.tables import TABLES, Table
from tv_lens.settings import Settings
from tv_lens.task_vectors.evaluation import evaluate
from tv_lens.tasks import get_task

FIGURES_MADE = ["main_table", "layer_sweep", "conflicting_tasks", "top_tokens", "clusters",
                "function_vectors_heads_arrow", "function_vectors_layers_arrow", "composition"]
PROTOCOL = reproduce.Protocol(main=Settings(n_baseline=6, n_dev=6, n_test=6),
                              fv=function_vectors.FVSettings().but(n_clean=4, n_corrupted=2, n_dev=3, n_test=3,
                                                                   k=3, tv_contexts=2, queries="all"),
                              fv_formats=("arrow",),
                              conflict=conflicting_tasks.ConflictSettings(n_items=6),
                              cluster=clusters.ClusterSettings(n_per_task=6), k=5,
                              composition=composition.CompositionSettings(format="arrow", queries="all").but(
                                  n_shots=3, n_clean=4, n_corrupted=2, n_dev=3, n_test=3, k=3, tv_contexts=2))


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def run_dir(tiny_llama, tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    reproduce.reproduce(tiny_llama, out, ["next_letter", "to_upper", "list_last", "list_first"], PROTOCOL,
                        progress=lambda message: None)
    return out


@pytest.fixture(scope="module")
def made(run_dir):
    return figures.make(run_dir)


def test_every_figure_is_written_offline_and_small(run_dir, made):
    out = run_dir / "figures"
    for name in FIGURES_MADE:
        html = (out / f"{name}.html").read_text()
        assert not re.search(r"<script[^>]*\bsrc=", html), "plotly.js must be inlined, not loaded"
        assert "Plotly.newPlot" in html and len(html) > 1_000_000
    report = (out / "report.html").read_text()
    assert report.count("Plotly.newPlot") == len(FIGURES_MADE) and "next_letter" in report
    if figures.find_browser() is None:
        pytest.skip("no Chrome/Chromium: PNGs are not made")
    for name in FIGURES_MADE:
        size = (out / f"{name}.png").stat().st_size
        assert 5_000 < size < 200_000, (name, size)


def test_tables_md_holds_every_table_of_the_run_in_markdown(run_dir, made):
    text = (run_dir / "figures" / "tables.md").read_text()
    for name, data in figures.load_run(run_dir).items():
        for table in TABLES[name](data):
            header = "| " + " | ".join(table.header) + " |"
            assert header in text and "|" + "---|" * len(table.header) in text
            for row in table.rows:
                assert "| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |" in text
    assert text.count("\n## ") == len(figures.load_run(run_dir))


def test_markdown_escapes_pipes_in_cells():
    assert Table(["a", "b"], [["x|y", "1"]]).markdown() == "| a | b |\n|---|---|\n| x\\|y | 1 |"


def test_report_renders_every_plot_in_headless_chromium(run_dir, made):
    browser = figures.find_browser()
    if browser is None:
        pytest.skip("no Chrome/Chromium installed (apt-get install -y chromium)")
    done = subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr", "--v=0",
         "--virtual-time-budget=15000", "--dump-dom", str(run_dir / "figures" / "report.html")],
        capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert len(re.findall(r'class="[^"]*\bjs-plotly-plot\b', done.stdout)) == len(FIGURES_MADE)
    console = [line for line in done.stderr.splitlines() if ":CONSOLE" in line]
    assert console == []


def test_pngs_are_skipped_with_a_message_without_a_browser(run_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(figures, "find_browser", lambda: None)
    written = figures.make(run_dir, tmp_path)
    assert not any(p.suffix == ".png" for p in written) and (tmp_path / "report.html").exists()
    assert "PNGs skipped: no Chrome/Chromium found" in capsys.readouterr().err


def test_pngs_are_skipped_with_a_message_without_kaleido(run_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(figures, "kaleido_installed", lambda: False)
    written = figures.make(run_dir, tmp_path)
    assert not any(p.suffix == ".png" for p in written) and (tmp_path / "report.html").exists()
    assert "PNGs skipped: kaleido is not installed (pip install 'tv-lens[png]')" in capsys.readouterr().err


def test_figures_command_errors_on_an_empty_run(tmp_path, capsys):
    assert main(["figures", str(tmp_path), "--no-png"]) == 2
    assert "no results" in capsys.readouterr().err


def test_figures_command_writes_into_out_and_names_the_report(run_dir, tmp_path, capsys):
    assert main(["figures", str(run_dir), "--out", str(tmp_path), "--no-png"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert out[-1] == f"open {(tmp_path / 'report.html').resolve().as_uri()}"
    expected = [f"{n}.html" for n in FIGURES_MADE] + ["report.html", "tables.md"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(expected)


def test_plots_take_library_objects(tiny_llama):
    result = evaluate(tiny_llama, get_task("next_letter"), n_baseline=4, n_dev=4, n_test=4)
    sweep = plots.layer_sweep(result)
    assert len(sweep.data[0].x) == tiny_llama.cfg.n_layers and sweep.data[0].name == "next_letter"
    assert len(plots.main_table([result]).data) == 3
    points = tsne_2d(torch.randn(8, 5))
    scatter = plots.tsne_scatter(points=points, labels=["a"] * 4 + ["b"] * 4, queries=list("abcdefgh"))
    assert [trace.name for trace in scatter.data] == ["a", "b"]
