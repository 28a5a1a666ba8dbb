"""Tasks of the task-vector experiments: the paper's 18 tasks, user tasks, scoring and sampling."""

from tv_lens.tasks.filters import FilterReport, single_token_mask
from tv_lens.tasks.loaders import FileCounts, TaskFileError, TaskFileWarning, load_task, read_pairs
from tv_lens.tasks.registry import get_task, list_tasks, register_task, resolve_task, unregister_task
from tv_lens.tasks.sampling import (
    Item,
    Splits,
    context_item,
    draw_queries,
    items_for,
    sample_contexts,
    sample_items,
    sample_splits,
    shuffle_labels,
)
from tv_lens.tasks.scoring import exact_match, get_scorer, list_scorers, prefix_match, register_scorer
from tv_lens.tasks.task import CATEGORIES, Task

__all__ = [
    "CATEGORIES",
    "FileCounts",
    "FilterReport",
    "Item",
    "Splits",
    "Task",
    "TaskFileError",
    "TaskFileWarning",
    "context_item",
    "draw_queries",
    "exact_match",
    "get_scorer",
    "get_task",
    "items_for",
    "list_scorers",
    "list_tasks",
    "load_task",
    "prefix_match",
    "read_pairs",
    "register_scorer",
    "register_task",
    "resolve_task",
    "sample_contexts",
    "sample_items",
    "sample_splits",
    "shuffle_labels",
    "single_token_mask",
    "unregister_task",
]
