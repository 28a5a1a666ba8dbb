"""The built-in tasks: the paper's 18 (six generated in code, twelve read from the JSON files in `data/`)
and four compound list tasks for vector composition, generated in code."""

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

COMPOSITION: dict[str, tuple[str, Callable[[], dict[str, str]]]] = {
    "list_first_upper": ("first item of a list of 2-4 letters, capitalised (q,f,a->Q)",
                         algorithmic.list_first_upper_pairs),
    "list_last_upper": ("last item of a list of 2-4 letters, capitalised (q,f,a->A)",
                        algorithmic.list_last_upper_pairs),
    "list_first_next": ("letter after the first item of a list of 2-4 letters (q,f,a->r)",
                        algorithmic.list_first_next_pairs),
    "list_last_next": ("letter after the last item of a list of 2-4 letters (q,f,a->b)",
                       algorithmic.list_last_next_pairs),
}
"""Compound tasks (Todd et al.'s composition experiment): list_first and list_last are the copies."""

DATA_TASKS = (
    "fr_en", "es_en", "en_fr", "en_es",
    "present_gerund", "present_past", "plural_singular", "antonyms",
    "country_capital", "person_language", "location_continent", "person_religion",
)

BUILTIN_TASKS = (*ALGORITHMIC, *DATA_TASKS)
"""The paper's 18 tasks, in its order."""
COMPOSITION_TASKS = tuple(COMPOSITION)


def algorithmic_task(name: str) -> Task:
    """Build one of the generated tasks (the paper's six or a compound one)."""
    description, generate = {**ALGORITHMIC, **COMPOSITION}[name]
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
    return algorithmic_task(name) if name in ALGORITHMIC or name in COMPOSITION else data_task(name)
