"""Composition of vectors (Todd et al. 2024, vector algebra): compound list tasks from the vectors of simpler
ones. For each compound task (the first or last item of a letter list, capitalised or moved to the next
letter), e.g. list_last_upper: ICL on the compound task, the compound's own vector, and the composed
vector v(list_last) + v(list_first_upper) - v(list_first), for the task-level θ (written over the
residual stream) and for the function vector (added to it), each at the layer that is best on the same
dev items. The six tasks are read on their common inputs, so they share one train/test/validation split:
no vector ever saw a test query of any task. The FV protocol is the FV paper's (every pair, the first
answer token scored, ā and the AIE on validation queries ICL answers correctly, accuracies on the test
queries it answers correctly; `queries="all"` takes every query), except that each FV sums its own
task's top heads (`heads="task"`): the paper's universal head set would need the six tasks' head effects
before any vector.

    python -m analyses.composition --model tiny-llama --out runs/x
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from tv_lens.function_vectors.items import FORMATS, QUERY_SETS, FVItems, fv_items, task_in_format
from tv_lens.function_vectors.vector import accuracy_with, function_vector
from tv_lens.patching.engine import Budget
from tv_lens.progress import bar, stage
from tv_lens.runs.records import ComponentVectors, CompositionRun, Source, VectorOnTask
from tv_lens.runs.store import Shard, Store
from tv_lens.settings import FV_CLEAN, FV_CORRUPTED, FV_HEADS, FV_PAPER, AnalysisSettings, Settings
from tv_lens.task_vectors.algebra import short_name
from tv_lens.task_vectors.sweep import best_layer, layer_sweep
from tv_lens.task_vectors.task_level import learn_task
from tv_lens.task_vectors.vector import FUNCTION_VECTOR, FunctionVector, TaskVector
from tv_lens.tasks import Item, Task, get_scorer, get_task
from tv_lens.tasks.prompts import PromptFormat

from .common import Outcome, Progress, report_reused, run_command, say

ANALYSIS = "composition"
VECTORS = "vectors"  # the sub-store of each task's θ and FV, under out/composition/
COMPOSITIONS = (  # target, then the vectors composed: first + second - third
    ("list_last_upper", ("list_last", "list_first_upper", "list_first")),
    ("list_first_upper", ("list_first", "list_last_upper", "list_last")),
    ("list_last_next", ("list_last", "list_first_next", "list_first")),
    ("list_first_next", ("list_first", "list_last_next", "list_last")),
)
TASKS = ("list_first", "list_last", "list_first_upper", "list_last_upper", "list_first_next", "list_last_next")


@dataclass(frozen=True)
class CompositionSettings(AnalysisSettings):
    """The FV paper's sizes (as in the function-vector analysis): `sizes` for the demonstrations, dev
    and test items; clean and corrupted prompts and heads of each FV; contexts of each task-level θ;
    the prompt format of every prompt ("qa", the FV paper's, or "arrow"); the queries of the FV protocol
    ("icl_correct", the FV paper's, or "all")."""

    USES = ("n_shots", "n_dev", "n_test")
    sizes: Settings = FV_PAPER
    n_clean: int = FV_CLEAN
    n_corrupted: int = FV_CORRUPTED
    k: int = FV_HEADS
    tv_contexts: int = 16
    format: str = "qa"
    queries: str = "icl_correct"


def shared_tasks(model, fmt_name: str) -> tuple[dict[str, Task], PromptFormat]:
    """The six tasks as the model reads them in one prompt format ("qa", or "arrow" in the variant the
    filter chooses for list_first), restricted to the inputs all of them keep (so one seed gives all
    of them one train/test split), and the format."""
    if fmt_name not in FORMATS:
        raise ValueError(f"unknown prompt format {fmt_name!r}: choose from {', '.join(FORMATS)}")
    _, fmt = task_in_format(model, get_task(TASKS[0]), fmt_name)
    kept = {name: task_in_format(model, get_task(name), fmt)[0] for name in TASKS}
    common = set.intersection(*(set(t.inputs) for t in kept.values()))
    if len(common) < 10:
        raise ValueError(f"the compound list tasks share {len(common)} inputs with single-token answers for this "
                         "model's tokenizer: too few for the composition experiment")
    return {name: t.with_pairs({x: t.pairs[x] for x in t.inputs if x in common}) for name, t in kept.items()}, fmt


def items_of(model, task: Task, fmt: PromptFormat, settings: CompositionSettings, seed: int,
             budget: Budget | None = None) -> FVItems:
    """The task's items under the FV protocol (the same split and dev items as `function_vector` draws)."""
    sizes = settings.sizes
    return fv_items(model, task, fmt, seed, n_shots=sizes.n_shots, n_clean=settings.n_clean,
                    n_corrupted=settings.n_corrupted, n_dev=sizes.n_dev, n_test=sizes.n_test, queries=settings.queries,
                    budget=budget)


def task_vectors(model, task: Task, fmt: PromptFormat, settings: CompositionSettings, seed: int,
                 budget: Budget | None = None) -> tuple[TaskVector, TaskVector]:
    """The task's θ (task-level: mean over `tv_contexts` contexts, none holding a test query) and its
    FV, each with its layer chosen on the dev items."""
    items = items_of(model, task, fmt, settings, seed, budget)
    sizes = settings.sizes
    theta = learn_task(model, task, k=settings.tv_contexts, seed=seed, n_shots=sizes.n_shots, dev=items.dev,
                       exclude=items.test_inputs, fmt=fmt, budget=budget)
    fv = function_vector(model, task, settings.k, heads="task", fmt=fmt, seed=seed, n_shots=sizes.n_shots,
                         n_clean=settings.n_clean, n_corrupted=settings.n_corrupted, n_dev=sizes.n_dev,
                         queries=settings.queries, budget=budget)
    return theta, fv


def dev_layer(model, task: Task, vector: TaskVector, dev: list[Item], fmt: PromptFormat,
              budget: Budget | None = None) -> tuple[int, list[float]]:
    """The first best layer for `vector` (in its own mode) on the dev items' zero-shot prompts, and
    the dev accuracy at each layer."""
    score = get_scorer(task.scoring)
    by_layer, _ = layer_sweep(model, [fmt.zero_shot_prompt(i) for i in dev], [vector.vectors] * len(dev),
                              lambda i, p: score(p, dev[i].answers), mode=vector.default_mode, budget=budget)
    values = [a.value for a in by_layer]
    return best_layer(values), values


def composition_result(model, target: Task, parts: tuple[str, str, str], vectors: dict[str, tuple[TaskVector, ...]],
                       fmt: PromptFormat, settings: CompositionSettings, seed: int,
                       budget: Budget | None = None) -> CompositionRun:
    """Zero-shot, ICL, own and composed θ and FV on the target's test items (see the module docstring):
    the composed vector is `parts[0] + parts[1] - parts[2]`."""
    items = items_of(model, target, fmt, settings, seed, budget)
    placed, components, cosine = {}, {}, {}
    for kind, index in (("theta", 0), ("fv", 1)):
        own = vectors[target.name][index]
        first, second, third = (vectors[name][index] for name in parts)
        composed = first + second - third
        with stage(f"{composed.recipe['expression']}: dev layer sweep"):
            layer, curve = dev_layer(model, target, composed, items.dev, fmt, budget)
        placed[kind] = (own, own.layer, own.dev_accuracy, short_name(own))
        placed[f"{kind}_composed"] = (composed, layer, curve, composed.recipe["expression"])
        components[kind] = composed.recipe["terms"]
        cosine[kind] = float(torch.nn.functional.cosine_similarity(own.at().float(),
                                                                   composed.vectors[own.layer].float(), dim=0))
    edits = {name: [(vector.intervention(layer=layer),)] for name, (vector, layer, _, _) in placed.items()}
    with stage("composition: test items"):
        test = accuracy_with(model, fmt, [fmt.zero_shot_prompt(i) for i in items.test], items.test,
                             {"none": [()], **edits}, budget)
    on_task = {name: VectorOnTask(recipe=recipe, layer=layer, dev_by_layer=curve, test=test[name][0])
               for name, (_, layer, curve, recipe) in placed.items()}
    return CompositionRun(target=target.name, n_pairs=len(target), n_test=len(items.test), baseline=test["none"][0],
                          icl=items.icl_test, theta=on_task["theta"], theta_composed=on_task["theta_composed"],
                          fv=on_task["fv"], fv_composed=on_task["fv_composed"], cosine=cosine, components=components)


def saved_vector(tensor, metadata: dict) -> TaskVector:
    """The vector (a `FunctionVector` for that kind) of a saved tensor and its `TaskVector.metadata()`."""
    return (FunctionVector if metadata["kind"] == FUNCTION_VECTOR else TaskVector)(vectors=tensor, **metadata)


def run(model, out, settings: CompositionSettings = CompositionSettings(), seed: int = 0, progress: Progress = say,
        shard: Shard | None = None, budget: Budget | None = None) -> Outcome:
    """θ and FV of each of the six tasks (a unit each, under out/composition/vectors/), then each
    composition (a unit each), written to out/composition/; with a `shard`, only its share of the
    tasks' vectors, and no compositions (the final run without a shard does them)."""
    tasks, fmt = shared_tasks(model, settings.format)
    vector_store = Store.open(Path(out) / ANALYSIS, VECTORS, model, settings.record(), seed, progress)
    names = shard.share(list(TASKS)) if shard else list(TASKS)
    vectors: dict[str, tuple[TaskVector, TaskVector]] = {}
    components, sources = [], []
    for i, name in enumerate(bar(names, "composition: vectors", unit="task"), 1):

        def compute(name: str = name, i: int = i) -> tuple[dict, dict]:
            start = time.perf_counter()
            theta, fv = task_vectors(model, tasks[name], fmt, settings, seed, budget)
            progress(f"[{ANALYSIS}] vectors {i}/{len(names)} {name}: θ layer {theta.layer}, FV layer {fv.layer} "
                     f"in {time.perf_counter() - start:.1f} s")
            record = ComponentVectors(task=name, n_pairs=len(tasks[name]), theta=theta.metadata(), fv=fv.metadata())
            return record.to_dict(), {"theta": theta.vectors, "fv": fv.vectors}

        unit = vector_store.get(name, compute, needs=["theta", "fv"], identity=tasks[name].digest)
        sources.append(Source(f"{ANALYSIS}/{VECTORS}", unit.key, unit.digest))  # the sub-store's folder in the run
        record = ComponentVectors.from_dict(unit.result, model.cfg.n_layers, f"{VECTORS}/{name}")
        components.append(record)
        vectors[name] = (saved_vector(unit.tensors["theta"], record.theta), saved_vector(unit.tensors["fv"], record.fv))
    report_reused(f"{ANALYSIS}/{VECTORS}", vector_store.reused, progress)
    vectors_computed = [f"{VECTORS}/{key}" for key in vector_store.computed]
    vectors_reused = [f"{VECTORS}/{key}" for key in vector_store.reused]
    if shard:
        return Outcome(None, None, vectors_computed, vectors_reused)
    store = Store.open(out, ANALYSIS, model, settings.record(), seed, progress)
    runs = []
    for i, (target, parts) in enumerate(bar(COMPOSITIONS, "composition", unit="task"), 1):

        def compose(target: str = target, parts: tuple = parts, i: int = i) -> tuple[CompositionRun, None]:
            start = time.perf_counter()
            done = composition_result(model, tasks[target], parts, vectors, fmt, settings, seed, budget)
            progress(f"[{ANALYSIS}] {i}/{len(COMPOSITIONS)} {target}: icl {done.icl.value:.2f} θ "
                     f"{done.theta.test.value:.2f} composed {done.theta_composed.test.value:.2f}, FV "
                     f"{done.fv.test.value:.2f} composed {done.fv_composed.test.value:.2f} "
                     f"in {time.perf_counter() - start:.1f} s")
            return done, None

        identity = "-".join(tasks[name].digest for name in (target, *parts))
        unit = store.get(target, compose, identity=identity)
        runs.append(unit.result)
        sources.append(unit.source)
    report_reused(ANALYSIS, store.reused, progress)
    written = store.write_results(sources, format=settings.format, prompt_format=asdict(fmt), tasks=components,
                                  compositions=runs)
    return Outcome(written, store.results_path, vectors_computed + store.computed, vectors_reused + store.reused)


def add_settings_arguments(p: argparse.ArgumentParser) -> None:
    """The sizes of CompositionSettings (--n-shots, --n-dev, ...) and --format."""
    for name, default in CompositionSettings().record().items():
        if name not in ("format", "queries"):
            p.add_argument("--" + name.replace("_", "-"), type=int, default=default,
                           help=f"{name.replace('_', ' ')} (default {default})")
    p.add_argument("--format", choices=FORMATS, default=CompositionSettings.format,
                   help=f"prompt format (default {CompositionSettings.format})")
    p.add_argument("--queries", choices=QUERY_SETS, default=CompositionSettings.queries,
                   help="the FV protocol's queries: those ICL answers correctly (icl_correct, the FV paper's; "
                        "default) or all")


def settings_from_args(args: argparse.Namespace) -> CompositionSettings:
    return CompositionSettings().but(**{k: getattr(args, k) for k in CompositionSettings().record()})


def main(argv: list[str] | None = None) -> int:
    return run_command(argv, __doc__, (add_settings_arguments,), lambda model, out, shard, args: run(
        model, out, settings_from_args(args), args.seed, shard=shard), tasks=False)


if __name__ == "__main__":
    sys.exit(main())
