"""The task registry: the built-in tasks (the paper's 18 and the compound list tasks; built lazily, then
cached) and user-registered tasks."""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from pathlib import Path

from tv_lens.errors import TvLensError
from tv_lens.tasks.builtin import BUILTIN_TASKS, COMPOSITION_TASKS, builtin_task
from tv_lens.tasks.loaders import FORMATS, load_task
from tv_lens.tasks.task import Task

_BUILT: dict[str, Task] = {}
_USER: dict[str, Task] = {}


def list_tasks(category: str | None = None, *, composition: bool = False) -> list[str]:
    """The names of the tasks `get_task` knows.

    Args:
        category: only the tasks of this category ("algorithmic", "translation", "linguistic", "knowledge",
            "custom"); None for all.
        composition: also list the four compound list tasks of the composition experiment
            (`list_first_upper`, ...).

    Returns:
        The paper's 18 tasks in its order, then the compound tasks (with `composition`), then your tasks in
            registration order.
    """
    builtin = [*BUILTIN_TASKS, *(COMPOSITION_TASKS if composition else ())]
    names = [*builtin, *(name for name in _USER if name not in builtin)]
    if category is None:
        return names
    return [name for name in names if get_task(name).category == category]


def get_task(name: str) -> Task:
    """A built-in or registered task by name.

    Args:
        name: a name of `list_tasks(composition=True)`; a task you registered under a built-in's name
            shadows the built-in.

    Returns:
        The task, unfiltered (`evaluate` and the others filter it for the model's tokenizer).

    Raises:
        TvLensError: an unknown name (the message suggests the nearest and lists the valid ones).
    """
    if name in _USER:
        return _USER[name]
    if name in BUILTIN_TASKS or name in COMPOSITION_TASKS:
        if name not in _BUILT:
            _BUILT[name] = builtin_task(name)
        return _BUILT[name]
    near = difflib.get_close_matches(name, list_tasks(composition=True), n=1)
    hint = f"did you mean {near[0]!r}? " if near else ""
    raise TvLensError(f"unknown task {name!r}; {hint}valid tasks: {', '.join(list_tasks(composition=True))}")


def resolve_task(spec: str | Task, scoring: str | None = None) -> Task:
    """A Task from a Task, a task file path (.json, .jsonl, .csv, any case) or a registered name;
    `scoring` is how a file's answers are scored (default exact); a named task has its own. An
    unregistered name with a suffix is read as a file, so `past.txt` says what file types work."""
    if not isinstance(spec, Task) and (Path(spec).suffix.lower() in FORMATS
                                       or (Path(spec).suffix and spec not in list_tasks(composition=True))):
        return load_task(spec, scoring=scoring or "exact")
    task = spec if isinstance(spec, Task) else get_task(spec)
    if scoring not in (None, task.scoring):
        raise TvLensError(f"task {task.name!r} is scored by {task.scoring}; a scoring can be given for task "
                          "files only (to change a task's, register a copy with register_task)")
    return task


def register_task(
    task_or_name: Task | str,
    pairs: Mapping[str, str | Sequence[str]] | None = None,
    *,
    category: str = "custom",
    description: str = "",
    scoring: str = "exact",
    single_token_filter: bool | None = None,
    overwrite: bool = False,
) -> Task:
    """Register a task of your own, so that `get_task`, `list_tasks` and the command line find it by name.

    Pass a `Task`, or a name with `pairs` (and the fields below) to build one.

    Args:
        task_or_name: a `Task`, or the name of the task to build.
        pairs: `{input: output or [outputs]}` of the task to build (the first output canonical); not with a `Task`.
        category: the category of the task to build.
        description: what the task to build asks.
        scoring: the scorer of the task to build: "exact", "prefix" or "any_of" (see `Task`).
        single_token_filter: the filter setting of the task to build; None means on unless scored by prefix.
        overwrite: replace a task of the same name (yours, or shadow a built-in).

    Returns:
        The registered task.

    Raises:
        TvLensError: the name is taken and `overwrite` is False; both a `Task` and `pairs`, or a name without
            them; pairs or fields that make no valid `Task`.
    """
    if isinstance(task_or_name, Task):
        if pairs is not None:
            raise TvLensError("pass either a Task or a name with pairs, not a Task with pairs")
        task = task_or_name
    else:
        if pairs is None:
            raise TvLensError(f"register_task({task_or_name!r}) needs pairs={{input: output}}")
        task = Task(
            name=task_or_name,
            category=category,
            description=description,
            pairs=pairs,
            scoring=scoring,
            single_token_filter=single_token_filter,
        )
    if not overwrite and (task.name in _USER or task.name in BUILTIN_TASKS or task.name in COMPOSITION_TASKS):
        raise TvLensError(f"task {task.name!r} already exists; pass overwrite=True or choose another name")
    _USER[task.name] = task
    return task


def unregister_task(name: str) -> None:
    """Remove a user task (a built-in it shadowed comes back); TvLensError if there is none."""
    if name not in _USER:
        raise TvLensError(f"no user task named {name!r}; user tasks: {', '.join(_USER) or '(none)'}")
    del _USER[name]
