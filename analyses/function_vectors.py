"""Function vectors beside task vectors (Todd et al. 2024 and Hendel et al. 2023) on one model: per task
and prompt format, the AIE of every head, the FV in each formulation added at every layer (zero-shot
and shuffled-label prompts), and the task vector on the same prompts, side by side. A control: the
top-k heads' last-token outputs replaced by ā in the test prompts themselves (`heads_patched`), which
reaches the residual stream through the model's own output projection and post-attention norm.

    python -m analyses.function_vectors --model tiny-llama --tasks next_letter to_upper --out runs/x
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch

from tv_lens.analysis.lens import top_tokens
from tv_lens.cli.options import at_least
from tv_lens.function_vectors.items import FORMATS, fv_items, task_in_format
from tv_lens.function_vectors.mediation import HeadEffects, head_effects
from tv_lens.function_vectors.vector import FORMULATIONS, accuracy_with, evaluate_fvs, fv_vectors
from tv_lens.patching.engine import counting
from tv_lens.patching.interventions import HOOK_Z, Intervention
from tv_lens.progress import bar, stage
from tv_lens.runs.records import FVRun, MeanAIE, TaskVectorRun, ZeroShotAndShuffled
from tv_lens.runs.store import Shard, Store
from tv_lens.settings import FV_CLEAN, FV_CORRUPTED, FV_HEADS, FV_PAPER, AnalysisSettings, Settings
from tv_lens.task_vectors.task_level import learn_task
from tv_lens.tasks import Task

from .common import Outcome, Progress, report_reused, resolve_tasks, run_command, say

ANALYSIS = "function_vectors"


@dataclass(frozen=True)
class FVSettings(AnalysisSettings):
    """The FV paper's sizes (FV.md): `sizes` for the demonstrations, dev and test items, then clean and
    corrupted prompts and heads summed; the task vector is a task-level θ from `tv_contexts` contexts
    of the same prompts (the paper's 2 dummy queries each), its layer chosen on the same dev items."""

    USES = ("n_shots", "n_dev", "n_test")
    sizes: Settings = FV_PAPER
    n_clean: int = FV_CLEAN
    n_corrupted: int = FV_CORRUPTED
    k: int = FV_HEADS
    tv_contexts: int = 16
    formulations: tuple[str, ...] = FORMULATIONS


def task_result(model, task: Task, fmt_name: str, settings: FVSettings, seed: int) -> tuple[FVRun, HeadEffects]:
    """Everything about one task in one prompt format (see the module docstring)."""
    kept, fmt = task_in_format(model, task, fmt_name, settings.sizes.n_shots)
    sizes = settings.sizes
    items = fv_items(kept, seed, n_shots=sizes.n_shots, n_clean=settings.n_clean, n_corrupted=settings.n_corrupted,
                     n_dev=sizes.n_dev, n_test=sizes.n_test)
    with counting() as count:
        effects = head_effects(model, kept, fmt=fmt, seed=seed, items=items)
        timings = {f"heads_{k}": v for k, v in effects.timings.items()}
        clock = time.perf_counter()
        theta = learn_task(model, kept, k=settings.tv_contexts, seed=seed, n_shots=sizes.n_shots, dev=items.dev,
                           exclude=items.test_inputs, fmt=fmt)
        timings["tv"] = time.perf_counter() - clock
        clock = time.perf_counter()
        vectors = {f: fv_vectors(model, effects, settings.k, f) for f in settings.formulations}
        heads_patched = tuple(Intervention(layer, effects.mean_z[layer, head], hook=HOOK_Z, head=head)
                              for layer, head, _ in effects.top_heads(settings.k))
        evaluations, controls = evaluate_fvs(model, kept, vectors, items, fmt,
                                             {"tv": (Intervention(theta.layer, theta.at()),),
                                              "heads": heads_patched})
        with stage("ICL on the test items"):
            icl = accuracy_with(model, kept, [fmt.icl_prompt(i) for i in items.test], items.test, {"icl": [()]})
        timings["evaluation"] = time.perf_counter() - clock
    low, high = effects.interval
    result = FVRun(
        format=fmt_name, task=task.name, category=task.category, n_pairs=len(kept), prompt_format=asdict(fmt),
        aie=effects.aie.tolist(), aie_low=low.tolist(), aie_high=high.tolist(),
        clean_accuracy=effects.clean_accuracy, corrupted_accuracy=effects.corrupted_accuracy,
        corrupted_prob=effects.corrupted_prob, top_heads=list(effects.top_heads(settings.k)),
        baseline=controls["zero_shot"]["none"], icl=icl["icl"][0], shuffled_icl=controls["shuffled"]["none"],
        tv=TaskVectorRun(theta.layer, theta.dev_accuracy, test=controls["zero_shot"]["tv"],
                         shuffled=controls["shuffled"]["tv"]),
        heads_patched=ZeroShotAndShuffled(controls["zero_shot"]["heads"], controls["shuffled"]["heads"]),
        fv=evaluations,
        cosine={f: torch.nn.functional.cosine_similarity(v, theta.vectors, dim=-1).tolist()
                for f, v in vectors.items()},
        fv_norm={f: v.norm(dim=-1).tolist() for f, v in vectors.items()},
        resid_norm=effects.resid_norm.tolist(),
        top_tokens={f: top_tokens(model, v[evaluations[f].zero_shot_layer], 20) for f, v in vectors.items()},
        timings=timings, tokens=count.tokens,
    )
    return result, effects


def mean_aie(rows: Sequence[FVRun]) -> MeanAIE:
    """The AIE averaged over tasks, with a 95% Student-t interval over tasks."""
    return MeanAIE.of(rows)


def run(model, out, tasks: Sequence[str | Task] | None = None, settings: FVSettings = FVSettings(), seed: int = 0,
        formats: Sequence[str] = FORMATS, progress: Progress = say, shard: Shard | None = None) -> Outcome:
    """The comparison for every task in every prompt format of `formats`, resumable, written to
    out/function_vectors/ (a unit per format and task, with its head-effect tensors); with a `shard`,
    only its share of the units, and no results file. A task the model's tokenizer cannot read in a
    format (e.g. no single-token answer after a space) is skipped there, with one line."""
    tasks = resolve_tasks(tasks)
    for name in formats:
        if name not in FORMATS:
            raise ValueError(f"unknown prompt format {name!r}: choose from {', '.join(FORMATS)}")
    store = Store.open(out, ANALYSIS, model, settings.record(), seed, progress)
    keys = {}
    for fmt_name in formats:
        for task in tasks:
            try:
                task_in_format(model, task, fmt_name, settings.sizes.n_shots)
            except ValueError as err:
                progress(f"[{ANALYSIS}] {fmt_name} {task.name} skipped: {err}")
                continue
            keys[fmt_name, task.name] = f"{fmt_name}__{task.name}"
    mine = set(shard.share(list(keys.values())) if shard else keys.values())
    todo = [(fmt_name, i, task) for fmt_name in formats for i, task in enumerate(tasks, 1)
            if keys.get((fmt_name, task.name)) in mine]
    units = []
    for fmt_name, i, task in bar(todo, "function vectors", unit="task"):

        def compute(task: Task = task, fmt_name: str = fmt_name, i: int = i) -> tuple[FVRun, dict]:
            start = time.perf_counter()
            result, effects = task_result(model, task, fmt_name, settings, seed)
            fv = result.fv[settings.formulations[0]]
            progress(f"[{ANALYSIS}] {fmt_name} {i}/{len(tasks)} {task.name}: zero-shot "
                     f"{result.baseline.value:.2f} icl {result.icl.value:.2f} shuffled "
                     f"{result.shuffled_icl.value:.2f} tv {result.tv.test.value:.2f} fv "
                     f"{fv.zero_shot.value:.2f} / {fv.shuffled.value:.2f} "
                     f"in {time.perf_counter() - start:.1f} s")
            return result, effects.tensors()

        units.append(store.get(keys[fmt_name, task.name], compute, needs=["effects"], identity=task.digest))
    report_reused(ANALYSIS, store.reused, progress)
    if shard:
        return Outcome(None, None, store.computed, store.reused)
    rows = [u.result for u in units]
    formats = [f for f in formats if any(r.format == f for r in rows)]
    if not formats:
        raise ValueError("no task could be read in any of the prompt formats asked for (see the lines above)")
    means = {f: mean_aie([r for r in rows if r.format == f]) for f in formats}
    written = store.write_results(units, k=settings.k, formats=formats, formulations=list(settings.formulations),
                                  runs=rows, mean_aie=means)
    return Outcome(written, store.results_path, store.computed, store.reused)


def add_settings_arguments(p: argparse.ArgumentParser) -> None:
    """The sizes of FVSettings (--fv-n-shots, ...), and --formats."""
    for name, default in FVSettings().record().items():
        if name != "formulations":
            p.add_argument("--fv-" + name.replace("_", "-"), type=at_least(1), default=default,
                           help=f"function vectors: {name.replace('_', ' ')} (default {default})")
    p.add_argument("--formats", nargs="+", choices=FORMATS, default=list(FORMATS),
                   help="prompt formats (default: both)")


def settings_from_args(args: argparse.Namespace) -> FVSettings:
    return FVSettings().but(**{k: getattr(args, "fv_" + k) for k in FVSettings().record() if k != "formulations"})


def main(argv: list[str] | None = None) -> int:
    return run_command(argv, __doc__, (add_settings_arguments,), lambda model, out, shard, args: run(
        model, out, args.tasks, settings_from_args(args), args.seed, args.formats, shard=shard))


if __name__ == "__main__":
    sys.exit(main())
