"""Function vectors beside task vectors (Todd et al. 2024 and Hendel et al. 2023) on one model, by the FV
paper's protocol (FV.md): per prompt format, each task's head effects (ā and the AIE on validation
queries ICL answers correctly), the universal head set (the top k heads by AIE averaged over the tasks
of the run), then per task the FV of the universal set and of the task's own top heads in each
formulation, added at every layer (zero-shot and shuffled-label prompts), the task vector on the same
prompts, and a control patching those heads' outputs with ā in the test prompts themselves
(`heads_patched`). With `compare_all_queries`, each task's AIE is also taken on all validation
queries (no ICL filter), to compare.

Two passes of resumable units: `function_vectors_heads/units/<format>__<task>` (the items and head
effects), then, once every task's are in, `function_vectors/units/<format>__<task>` (the evaluations).

    python -m analyses.function_vectors --model tiny-llama --tasks next_letter to_upper --out runs/x
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch

from tv_lens.analysis.lens import top_tokens
from tv_lens.cli.options import at_least
from tv_lens.function_vectors.items import FORMATS, QUERY_SETS, FVItems, UnusableTask, fv_items, task_in_format
from tv_lens.function_vectors.mediation import HeadEffects, UniversalHeads, head_effects, universal_heads
from tv_lens.function_vectors.vector import FORMULATIONS, RANKINGS, accuracy_with, evaluate_fvs, fv_vectors
from tv_lens.patching.engine import counting
from tv_lens.patching.interventions import HOOK_Z, Intervention
from tv_lens.progress import bar, stage
from tv_lens.runs.records import FVRun, SkippedTask, TaskVectorRun, ZeroShotAndShuffled
from tv_lens.runs.store import Shard, Store, Unit
from tv_lens.settings import FV_CLEAN, FV_CORRUPTED, FV_HEADS, FV_PAPER, PAPER, AnalysisSettings, Settings
from tv_lens.task_vectors.learning import learn_items
from tv_lens.task_vectors.sweep import best_layer
from tv_lens.tasks import Task, sample_contexts

from .common import Outcome, Progress, report_reused, resolve_tasks, run_command, say

ANALYSIS = "function_vectors"
HEADS = "function_vectors_heads"
"""The folder of the first pass's units (items and head effects), beside the analysis's own."""
INT_SETTINGS = ("n_shots", "n_dev", "n_test", "n_clean", "n_corrupted", "k", "tv_contexts")


@dataclass(frozen=True)
class FVSettings(AnalysisSettings):
    """The FV paper's protocol and sizes (FV.md): `sizes` for the demonstrations and the most ICL-correct
    validation (dev) and test queries kept, then clean and shuffled-label prompts and heads summed; the
    task vector is a task-level θ from `tv_contexts` contexts of the same prompts (the paper's 2 dummy
    queries each), its layer chosen on the same dev items. `queries="all"` and `single_token_filter`
    are the variants (every query; single-token answers only)."""

    USES = ("n_shots", "n_dev", "n_test")
    sizes: Settings = FV_PAPER
    n_clean: int = FV_CLEAN
    n_corrupted: int = FV_CORRUPTED
    k: int = FV_HEADS
    tv_contexts: int = 16
    formulations: tuple[str, ...] = FORMULATIONS
    rankings: tuple[str, ...] = RANKINGS
    queries: str = "icl_correct"
    single_token_filter: bool = False
    compare_all_queries: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()  # every size a whole number of at least 1
        if self.queries not in QUERY_SETS:
            raise ValueError(f"unknown query set {self.queries!r}: choose one of {', '.join(QUERY_SETS)}")
        for name, values, known in (("formulations", self.formulations, FORMULATIONS),
                                    ("rankings", self.rankings, RANKINGS)):
            if not values or set(values) - set(known):
                raise ValueError(f"{name} must be some of {', '.join(known)}, got {', '.join(values) or 'none'}")


def heads_unit(model, task: Task, fmt_name: str, settings: FVSettings, seed: int) -> tuple[dict, dict]:
    """The first pass on one task in one prompt format: its items and head effects (and, with
    `compare_all_queries`, its AIE on all validation queries), or why it cannot take part."""
    sizes = settings.sizes
    try:
        kept, fmt = task_in_format(model, task, fmt_name, n_shots=sizes.n_shots,
                                   single_token_filter=settings.single_token_filter)
    except ValueError as err:  # no usable answer, or a text the format cannot hold (tasks.prompts.check_pairs)
        return {"skipped": str(err)}, {}
    common = dict(n_shots=sizes.n_shots, n_clean=settings.n_clean, n_corrupted=settings.n_corrupted, n_dev=sizes.n_dev)
    try:
        with stage("ICL-correct queries" if settings.queries == "icl_correct" else "queries"):
            items = fv_items(model, kept, fmt, seed, n_test=sizes.n_test, queries=settings.queries, **common)
    except UnusableTask as err:
        return {"skipped": str(err)}, {}
    effects = head_effects(model, kept, fmt=fmt, seed=seed, items=items, queries=settings.queries,
                           single_token_filter=settings.single_token_filter, **common)
    result = {"n_pairs": len(kept), "items": items.to_dict(), "effects": effects.to_dict(), "aie_all": None}
    if settings.compare_all_queries and settings.queries != "all":
        every = head_effects(model, kept, fmt=fmt, seed=seed, queries="all",
                             single_token_filter=settings.single_token_filter, **common)
        result["aie_all"] = every.aie.tolist()
    return result, effects.tensors()


def universal_digest(universal: UniversalHeads) -> str:
    """A short hash of what a universal set changes in a task's evaluation (its tasks and its ranking)."""
    content = json.dumps([universal.tasks, universal.heads])
    return hashlib.sha256(content.encode()).hexdigest()[:16]


def task_result(model, task: Task, fmt_name: str, settings: FVSettings, seed: int, heads: Unit,
                universal: UniversalHeads) -> FVRun:
    """The second pass on one task in one prompt format (see the module docstring)."""
    kept, fmt = task_in_format(model, task, fmt_name, n_shots=settings.sizes.n_shots,
                               single_token_filter=settings.single_token_filter)
    items = FVItems.from_dict(heads.result["items"])
    effects = HeadEffects.from_parts(heads.result["effects"], heads.tensors)
    ranked = {"universal": universal.top_heads(settings.k), "task": effects.top_heads(settings.k)}
    ranked = {name: ranked[name] for name in settings.rankings}
    timings = {f"heads_{k}": v for k, v in effects.timings.items()}
    with counting() as count:
        clock = time.perf_counter()
        tv = task_vector(model, kept, fmt, items, settings, seed)
        timings["tv"] = time.perf_counter() - clock
        clock = time.perf_counter()
        vectors = {f"{r}/{f}": fv_vectors(model, effects, ranked[r], f) for r in ranked for f in settings.formulations}
        controls = {"tv": (Intervention(tv["layer"], tv["vectors"][tv["layer"]]),),
                    **{f"heads/{r}": tuple(Intervention(layer, effects.mean_z[layer, head], hook=HOOK_Z, head=head)
                                           for layer, head, _ in ranked[r]) for r in ranked}}
        evaluations, tested = evaluate_fvs(model, vectors, items, fmt, controls)
        timings["evaluation"] = time.perf_counter() - clock
    low, high = effects.interval

    def by_ranking(values: dict) -> dict:
        return {r: {f: values[f"{r}/{f}"] for f in settings.formulations} for r in ranked}

    return FVRun(
        format=fmt_name, task=task.name, category=task.category, n_pairs=len(kept), prompt_format=asdict(fmt),
        queries=settings.queries, aie=effects.aie.tolist(), aie_low=low.tolist(), aie_high=high.tolist(),
        aie_all=heads.result["aie_all"], icl_valid=effects.icl_accuracy, clean_accuracy=effects.clean_accuracy,
        corrupted_accuracy=effects.corrupted_accuracy, corrupted_prob=effects.corrupted_prob, heads=ranked,
        baseline=tested["zero_shot"]["none"], icl=items.icl_test, shuffled_icl=tested["shuffled"]["none"],
        tv=TaskVectorRun(tv["layer"], tv["dev"], test=tested["zero_shot"]["tv"], shuffled=tested["shuffled"]["tv"]),
        heads_patched={r: ZeroShotAndShuffled(tested["zero_shot"][f"heads/{r}"], tested["shuffled"][f"heads/{r}"])
                       for r in ranked},
        fv=by_ranking(evaluations),
        cosine=by_ranking({n: torch.nn.functional.cosine_similarity(v, tv["vectors"], dim=-1).tolist()
                           for n, v in vectors.items()}),
        fv_norm=by_ranking({n: v.norm(dim=-1).tolist() for n, v in vectors.items()}),
        resid_norm=effects.resid_norm.tolist(),
        top_tokens=by_ranking({n: top_tokens(model, v[evaluations[n].zero_shot_layer], 20)
                               for n, v in vectors.items()}),
        timings=timings, tokens=count.tokens + effects.tokens,
    )


def task_vector(model, task: Task, fmt, items: FVItems, settings: FVSettings, seed: int) -> dict:
    """θ of the task on the FV's prompts: the mean over `tv_contexts` contexts of train inputs (2
    dummy queries each) of the per-context θ, its layer the first best on the dev items' zero-shot
    prompts, scored on the first answer token like the FV."""
    contexts = sample_contexts(task, settings.tv_contexts, seed, n_shots=settings.sizes.n_shots,
                               n_dummies=PAPER.n_dummies, exclude=set(items.valid_inputs) | set(items.test_inputs))
    with stage(f"θ of {len(contexts)} contexts"):
        thetas, _ = learn_items(model, contexts, fmt)
    vectors = torch.stack(thetas).mean(0)
    with stage("θ layer sweep on dev items"):
        curve = accuracy_with(model, fmt, [fmt.zero_shot_prompt(i) for i in items.dev], items.dev,
                              {"tv": [(Intervention(layer, vectors[layer]),) for layer in range(model.cfg.n_layers)]}
                              )["tv"]
    dev = [a.value for a in curve]
    return {"vectors": vectors, "layer": best_layer(dev), "dev": dev}


def run(model, out, tasks: Sequence[str | Task] | None = None, settings: FVSettings = FVSettings(), seed: int = 0,
        formats: Sequence[str] = FORMATS, progress: Progress = say, shard: Shard | None = None) -> Outcome:
    """The comparison for every task in every prompt format of `formats`, resumable, in two passes (see
    the module docstring), written to out/function_vectors/. With a `shard`, only its share of each
    pass's units (the second once every first-pass unit is in), and no results file. A task that
    cannot take part in a format (no answer with a first token of its own, ICL answers no validation
    query or no test query correctly) is skipped there, with one line, and listed in the results."""
    tasks = resolve_tasks(tasks)
    for name in formats:
        if name not in FORMATS:
            raise ValueError(f"unknown prompt format {name!r}: choose from {', '.join(FORMATS)}")
    record = settings.record()
    heads_store = Store.open(out, HEADS, model, record, seed, progress)
    store = Store.open(out, ANALYSIS, model, record, seed, progress)
    keys = [(fmt_name, task) for fmt_name in formats for task in tasks]
    key = {(f, t.name): f"{f}__{t.name}" for f, t in keys}
    mine = set(shard.share(list(key.values())) if shard else key.values())
    first = {}
    for fmt_name, task in bar([k for k in keys if key[k[0], k[1].name] in mine], "head effects", unit="task"):

        def compute(task: Task = task, fmt_name: str = fmt_name) -> tuple[dict, dict]:
            start = time.perf_counter()
            result, tensors = heads_unit(model, task, fmt_name, settings, seed)
            done = "cannot take part (see below)" if "skipped" in result else "head effects"
            progress(f"[{ANALYSIS}] {fmt_name} {task.name}: {done} in {time.perf_counter() - start:.1f} s")
            return result, tensors

        first[fmt_name, task.name] = heads_store.get(key[fmt_name, task.name], compute, identity=task.digest)
    missing = []
    for fmt_name, task in keys:
        if (fmt_name, task.name) not in first:
            unit = heads_store.load(key[fmt_name, task.name], identity=task.digest)
            if unit is None:
                missing.append(key[fmt_name, task.name])
            else:
                first[fmt_name, task.name] = unit
    if missing:
        progress(f"[{ANALYSIS}] {len(missing)} head-effects unit(s) of other shards are not in yet "
                 f"({', '.join(missing[:4])}{', ...' if len(missing) > 4 else ''}): run again once they are")
        return Outcome(None, None, heads_store.computed, heads_store.reused)
    skipped, universal, usable = [], {}, []
    for fmt_name in formats:
        ready = []
        for task in tasks:
            result = first[fmt_name, task.name].result
            if "skipped" in result:
                skipped.append(SkippedTask(fmt_name, task.name, result["skipped"]))
            elif not result["items"]["test"]:
                skipped.append(SkippedTask(fmt_name, task.name, f"task {task.name!r}: ICL answers none of the "
                                           f"{result['items']['icl_test']['total']} test queries screened correctly"))
                ready.append(task)
            else:
                ready.append(task)
                usable.append((fmt_name, task))
        units = [first[fmt_name, t.name] for t in ready]
        with_effects = [HeadEffects.from_parts(u.result["effects"], u.tensors) for u in units]
        if with_effects:
            universal[fmt_name] = universal_heads(with_effects, settings.k)
    for s in skipped:
        progress(f"[{ANALYSIS}] {s.format} {s.task} skipped: {s.reason}")
    evaluated = []
    for fmt_name, task in bar([k for k in usable if key[k[0], k[1].name] in mine], "function vectors", unit="task"):

        def evaluate(task: Task = task, fmt_name: str = fmt_name) -> tuple[FVRun, None]:
            start = time.perf_counter()
            result = task_result(model, task, fmt_name, settings, seed, first[fmt_name, task.name],
                                 universal[fmt_name])
            shown = [f"{r} {result.fv[r][settings.formulations[0]].zero_shot.value:.2f} / "
                     f"{result.fv[r][settings.formulations[0]].shuffled.value:.2f}" for r in result.fv]
            progress(f"[{ANALYSIS}] {fmt_name} {task.name}: zero-shot {result.baseline.value:.2f} icl "
                     f"{result.icl.value:.2f} shuffled {result.shuffled_icl.value:.2f} tv {result.tv.test.value:.2f} "
                     f"fv {', '.join(shown)} ({result.baseline.total} test queries) in "
                     f"{time.perf_counter() - start:.1f} s")
            return result, None

        identity = f"{task.digest}:{universal_digest(universal[fmt_name])}"
        evaluated.append(store.get(key[fmt_name, task.name], evaluate, identity=identity))
    report_reused(ANALYSIS, heads_store.reused + store.reused, progress)
    if shard:
        return Outcome(None, None, heads_store.computed + store.computed, heads_store.reused + store.reused)
    sources = [first[fmt_name, task.name] for fmt_name, task in keys] + evaluated
    written = store.write_results(sources, k=settings.k, formats=list(formats),
                                  formulations=list(settings.formulations), rankings=list(settings.rankings),
                                  queries=settings.queries, runs=[u.result for u in evaluated],
                                  universal=universal, skipped=skipped)
    return Outcome(written, store.results_path, heads_store.computed + store.computed,
                   heads_store.reused + store.reused)


def add_settings_arguments(p: argparse.ArgumentParser) -> None:
    """The sizes of FVSettings (--fv-n-shots, ...), the protocol's variants, and --formats."""
    defaults = FVSettings().record()
    for name in INT_SETTINGS:
        p.add_argument("--fv-" + name.replace("_", "-"), type=at_least(1), default=defaults[name],
                       help=f"function vectors: {name.replace('_', ' ')} (default {defaults[name]})")
    p.add_argument("--fv-queries", choices=QUERY_SETS, default="icl_correct",
                   help="function vectors: the queries of ā, the AIE and the accuracies: those ICL answers correctly "
                        "(icl_correct, the FV paper's; default) or all")
    p.add_argument("--fv-single-token-filter", action="store_true",
                   help="function vectors: keep single-token answers only (default: every pair, first token scored)")
    p.add_argument("--fv-no-all-queries", dest="fv_compare_all_queries", action="store_false",
                   help="function vectors: skip the AIE on all validation queries taken beside the ICL-correct one")
    p.add_argument("--formats", nargs="+", choices=FORMATS, default=list(FORMATS),
                   help="prompt formats (default: both)")


def settings_from_args(args: argparse.Namespace) -> FVSettings:
    return FVSettings().but(**{k: getattr(args, "fv_" + k) for k in (*INT_SETTINGS, "queries", "single_token_filter",
                                                                     "compare_all_queries")})


def main(argv: list[str] | None = None) -> int:
    return run_command(argv, __doc__, (add_settings_arguments,), lambda model, out, shard, args: run(
        model, out, args.tasks, settings_from_args(args), args.seed, args.formats, shard=shard))


if __name__ == "__main__":
    sys.exit(main())
