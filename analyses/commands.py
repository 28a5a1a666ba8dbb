"""The experiments' commands of `tv-lens`: `reproduce` and `figures`, registered in the `tv_lens.commands`
entry-point group (pyproject.toml), which `tv_lens.cli.main` reads.

Installed, this folder is the package `tv_lens_analyses` and figures/ is `tv_lens_figures` (see
pyproject.toml): the experiments sit above the library, which never imports them, and pip puts no
generic `analyses` or `figures` into site-packages. Heavy imports happen inside the run functions, as
in `tv_lens.cli.main`.
"""

from __future__ import annotations

import argparse
from importlib import import_module
from pathlib import Path

from tv_lens.cli.options import add_model_options, add_shard_option

from . import EXPERIMENTS


def figures_module():
    """`figures.make` in a checkout, `tv_lens_figures.make` installed: the sibling of this package."""
    return import_module(__package__.replace("analyses", "figures") + ".make")


def write_figures(run_dir: Path, out: Path | None, png: bool, like=None) -> Path:
    """Every figure and report.html of a run (of the configuration `like` when given); prints the files and
    the report to open."""
    written = figures_module().make(run_dir, out, png=png, like=like)
    for path in written:
        print(f"{path}  ({path.stat().st_size / 1024:.0f} KiB)")
    report = written[-1]
    print(f"open {report.resolve().as_uri()}")
    return report


def _reproduce(args: argparse.Namespace) -> None:
    from .reproduce import run_from_args

    done = run_from_args(args)
    if done is not None and not args.no_figures:
        out, configuration = done
        write_figures(out, None, png=True, like=configuration)


def _figures(args: argparse.Namespace) -> None:
    write_figures(args.run_dir, args.out, png=not args.no_png)


def add_commands(commands) -> None:
    """Register `reproduce` and `figures` on the `tv-lens` subcommands."""
    p = commands.add_parser(
        "reproduce", help="run every experiment of the paper on one model, then its figures and report",
        description="Run the paper's five experiments on one model (main table, layer sweep, conflicting tasks, "
                    "top tokens, clusters), function vectors beside them and the composition of vectors (compound "
                    "list tasks), resuming what a run directory already holds; print the tables, then write the "
                    "figures and report.html into RUN_DIR/figures.")
    p.add_argument("--quick", action="store_true",
                   help="smoke run: every experiment on 3 tasks at 1 or 2 items each, function vectors on 2 of them, "
                        "arrow prompts only (the full protocol otherwise)")
    p.add_argument("--out", type=Path, help="run directory (default runs/<model>, runs/<model>-quick with --quick)")
    p.add_argument("--tasks", nargs="+", help="task names or task files (default: the paper's 18)")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the item sampling (default 0, the seed of the README's numbers)")
    p.add_argument("--experiments", nargs="+", choices=EXPERIMENTS, default=list(EXPERIMENTS),
                   help="experiments to run (default: all; the first five share the main table)")
    p.add_argument("--no-figures", action="store_true", help="skip the figures and report.html")
    add_shard_option(p)
    add_model_options(p)
    p.set_defaults(run=_reproduce)

    p = commands.add_parser(
        "figures", help="write the figures and report.html of a run directory",
        description="Write each experiment's figure as interactive HTML (plotly.js inlined, works offline) and "
                    "PNG (needs the extra tv-lens[png] and Chrome or Chromium), one report.html with every figure and "
                    "table, and tables.md with every table in Markdown.")
    p.add_argument("run_dir", type=Path, help="a run directory written by tv-lens reproduce or the analyses")
    p.add_argument("--out", type=Path, help="output folder (default RUN_DIR/figures)")
    p.add_argument("--no-png", action="store_true", help="skip the static PNGs")
    p.set_defaults(run=_figures)

