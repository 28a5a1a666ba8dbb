"""Experiment 4, top tokens: θ averaged over a task's test items, at its best layer, projected
through the final norm and the unembedding. Also θ minus the mean θ over all tasks at that layer:
on small models the raw projection is dominated by a component every task shares.

    python -m analyses.top_tokens --model tiny-llama --tasks next_letter to_upper --out runs/x
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from dataclasses import asdict

import torch
from jaxtyping import Float
from torch import Tensor

from analyses import main_table
from analyses.common import Outcome, Progress, kept, load, parser, report_reused, resolve_tasks, say
from tv_lens.learn import learn_items
from tv_lens.lens import top_tokens
from tv_lens.prompts import PromptFormat
from tv_lens.results import Store
from tv_lens.tasks import Task, sample_splits

ANALYSIS = "top_tokens"


def mean_theta(model, task: Task, settings: main_table.MainTableSettings,
               seed: int) -> tuple[Float[Tensor, "n_layers d_model"], int]:
    """θ ([n_layers, d_model]) averaged over the main table's test items of `task`, and their number."""
    task = kept(model, task)
    splits = sample_splits(task, seed=seed, **asdict(settings))
    thetas, _ = learn_items(model, splits.test, PromptFormat.for_task(task))
    return torch.stack(thetas).mean(0), len(thetas)


def run(model, out, tasks: Sequence[str | Task] | None = None,
        settings: main_table.MainTableSettings = main_table.MainTableSettings(), seed: int = 0, k: int = 20,
        best_layers: dict[str, int] | None = None, progress: Progress = say) -> Outcome:
    """Top-`k` tokens of each task's mean θ, raw and centred, at the task's best layer (from
    `best_layers`, or the main table run or reused in `out`)."""
    tasks = resolve_tasks(tasks)
    layers = best_layers or main_table.best_layers(model, out, tasks, settings, seed, progress)
    store = Store.open(out, ANALYSIS, model, {"main_table": asdict(settings)}, seed)
    thetas, counts = {}, {}
    for i, task in enumerate(tasks, 1):
        done = store.load(task.name)
        if done is None:
            start = time.perf_counter()
            theta, n = mean_theta(model, task, settings, seed)
            done = {"n_items": n}
            store.save(task.name, done, {"theta": theta})
            progress(f"[top_tokens] {i}/{len(tasks)} {task.name}: mean θ of {n} items "
                     f"in {time.perf_counter() - start:.1f} s")
        thetas[task.name] = store.load_tensors(task.name)["theta"]
        counts[task.name] = done["n_items"]
    report_reused(ANALYSIS, store.reused, progress)
    centre = torch.stack(list(thetas.values())).mean(0)
    rows = [{"task": t.name, "category": t.category, "layer": layers[t.name], "n_items": counts[t.name],
             "raw": top_tokens(model, thetas[t.name], k, layer=layers[t.name]).to_dict(),
             "centred": top_tokens(model, thetas[t.name], k, layer=layers[t.name],
                                   centre=centre[layers[t.name]]).to_dict()}
            for t in tasks]
    written = store.write_results({"k": k, "tasks": rows})
    return Outcome(written, store.results_path, store.computed, store.reused)


def format_table(results: dict, shown: int = 8) -> str:
    """The first `shown` tokens of each task, raw and centred."""
    lines = []
    for r in results["tasks"]:
        lines.append(f"{r['task']} (layer {r['layer']})")
        for kind in ("raw", "centred"):
            lines.append(f"  {kind:<8} " + " ".join(repr(t) for t in r[kind]["tokens"][:shown]))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("-k", type=int, default=20, help="tokens per task (default 20)")
    main_table.add_settings_arguments(p)
    args = p.parse_args(argv)
    model, out = load(args)
    outcome = run(model, out, args.tasks, main_table.settings_from_args(args), args.seed, args.k)
    say(format_table(outcome.results))
    say(f"wrote {outcome.path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
