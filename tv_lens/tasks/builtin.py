"""The paper's 18 tasks: six generated in code, twelve read from the JSON files in `data/`."""

from __future__ import annotations

import json
from collections.abc import Callable
from importlib import resources

from tv_lens.tasks import algorithmic
from tv_lens.tasks.task import Task

ALGORITHMIC: dict[str, tuple[str, Callable[[], dict[str, str]]]] = {
    "next_letter": ("next letter of the alphabet (a->b)", algorithmic.next_letter_pairs),
    "prev_letter": ("previous letter of the alphabet (b->a)", algorithmic.prev_letter_pairs),
    "list_first": ("first item of a list of 2-4 letters (q,f,a->q)", algorithmic.list_first_pairs),
    "list_last": ("last item of a list of 2-4 letters (q,f,a->a)", algorithmic.list_last_pairs),
    "to_upper": ("lowercase letter to uppercase (a->A)", algorithmic.to_upper_pairs),
    "to_lower": ("uppercase letter to lowercase (A->a)", algorithmic.to_lower_pairs),
}

DATA_TASKS = (
    "fr_en", "es_en", "en_fr", "en_es",
    "present_gerund", "present_past", "plural_singular", "antonyms",
    "country_capital", "person_language", "location_continent", "person_religion",
)

BUILTIN_TASKS = (*ALGORITHMIC, *DATA_TASKS)


def algorithmic_task(name: str) -> Task:
    """Build one of the six generated tasks."""
    description, generate = ALGORITHMIC[name]
    return Task(name=name, category="algorithmic", description=description, pairs=generate(), scoring="exact")


def data_task(name: str) -> Task:
    """Read one of the twelve data tasks from `tv_lens/tasks/data/{name}.json`."""
    text = resources.files("tv_lens.tasks").joinpath("data", f"{name}.json").read_text(encoding="utf-8")
    record = json.loads(text)
    return Task(
        name=record["name"],
        category=record["category"],
        description=record["description"],
        pairs=record["pairs"],
        scoring=record["scoring"],
    )


def builtin_task(name: str) -> Task:
    """Build the built-in task `name` (generated or read from data)."""
    return algorithmic_task(name) if name in ALGORITHMIC else data_task(name)
