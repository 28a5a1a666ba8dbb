"""The function-vector protocol's items (Todd et al. 2024): a train/test split of the task's inputs,
clean ICL items, and corrupted items whose demonstration labels are shuffled.

Inputs are split 70/30 into train and test (seeded, from the sorted inputs). Demonstrations always
come from train and never contain the item's own query. Clean and corrupted items (for the mean head
activations and the indirect effects) and dev items (for choosing a layer) query train inputs; test
items query test inputs, each once. Shuffling permutes the demonstrations' outputs among them (a
seeded shuffle, as in the paper: a demonstration may keep its own label by chance), keeping the format.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from tv_lens.models.bridge import Model
from tv_lens.patching.engine import token_limit
from tv_lens.settings import FV_CLEAN, FV_CORRUPTED, FV_PAPER
from tv_lens.tasks import Item, Task, draw_queries, items_for, shuffle_labels
from tv_lens.tasks.prompts import QA_FORMAT, PromptFormat, prompt_ready

TRAIN_FRACTION = 0.7
FORMATS = ("qa", "arrow")


def task_in_format(model: Model, task: Task, fmt: str | PromptFormat = "qa",
                   n_shots: int = FV_PAPER.n_shots) -> tuple[Task, PromptFormat]:
    """The task filtered for the model's tokenizer in a prompt format, and that format: "qa" (the
    FV paper's `Q: {x}\nA: {y}`, answers after a space), "arrow" (the task-vector paper's, in the
    variant the filter chooses) or a `PromptFormat` (its own variant). A text the format cannot hold
    is refused, pairs too long for `n_shots`-shot prompts skipped (`tv_lens.tasks.texts.prompt_ready`)."""
    if isinstance(fmt, PromptFormat):
        kept = task.filtered(model.tokenizer, leading_space=fmt.leading_space)
    elif fmt == "qa":
        kept, fmt = task.filtered(model.tokenizer, leading_space=True), QA_FORMAT
    elif fmt == "arrow":
        kept = task.filtered(model.tokenizer)
        fmt = PromptFormat.for_task(kept)
    else:
        raise ValueError(f"unknown prompt format {fmt!r}: choose one of {', '.join(FORMATS)} or pass a PromptFormat")
    return prompt_ready(kept, fmt, model.tokenizer, token_limit(model), n_shots), fmt


@dataclass(frozen=True)
class FVItems:
    """Every item set of one task's function-vector experiment (see the module docstring)."""

    train: list[str]
    test_inputs: list[str]
    clean: list[Item]
    corrupted: list[Item]
    dev: list[Item]
    test: list[Item]
    dev_shuffled: list[Item]
    test_shuffled: list[Item]


def split_inputs(task: Task, seed: int, train_fraction: float = TRAIN_FRACTION) -> tuple[list[str], list[str]]:
    """The task's inputs shuffled with `random.Random(seed)` and cut into train and test."""
    if not 0 < train_fraction < 1:
        raise ValueError(f"train_fraction must be between 0 and 1, got {train_fraction}")
    shuffled = random.Random(seed).sample(task.inputs, len(task))
    cut = round(len(shuffled) * train_fraction)
    return shuffled[:cut], shuffled[cut:]


def fv_items(task: Task, seed: int = 0, *, n_shots: int = FV_PAPER.n_shots, n_clean: int = FV_CLEAN,
             n_corrupted: int = FV_CORRUPTED, n_dev: int = FV_PAPER.n_dev, n_test: int = FV_PAPER.n_test,
             train_fraction: float = TRAIN_FRACTION) -> FVItems:
    """The items of one task: `n_clean` clean and `n_corrupted` shuffled-label items on train queries
    (recurring when train is small), up to `n_dev` dev items on distinct train queries and up to
    `n_test` test items on distinct test queries, and the dev and test items with shuffled labels."""
    for name, value in dict(n_shots=n_shots, n_clean=n_clean, n_corrupted=n_corrupted, n_dev=n_dev,
                            n_test=n_test).items():
        if value < 1:
            raise ValueError(f"{name} must be at least 1, got {value}")
    train, test = split_inputs(task, seed, train_fraction)
    if not test or len(train) < 2:
        raise ValueError(f"task {task.name!r} has {len(task)} pairs: too few for a {train_fraction:.0%} train "
                         f"split with a test set; add pairs to the task")
    rng = random.Random(seed + 1)
    clean = items_for(task, draw_queries(train, n_clean, rng), rng, n_shots, pool=train)
    corrupted = [shuffle_labels(item, rng)
                 for item in items_for(task, draw_queries(train, n_corrupted, rng), rng, n_shots, pool=train)]
    dev = items_for(task, rng.sample(train, min(n_dev, len(train))), rng, n_shots, pool=train)
    test_items = items_for(task, rng.sample(test, min(n_test, len(test))), rng, n_shots, pool=train)
    return FVItems(train=train, test_inputs=test, clean=clean, corrupted=corrupted, dev=dev, test=test_items,
                   dev_shuffled=[shuffle_labels(item, rng) for item in dev],
                   test_shuffled=[shuffle_labels(item, rng) for item in test_items])
