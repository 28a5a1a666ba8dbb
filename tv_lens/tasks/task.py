"""The Task record: a named mapping from inputs to accepted outputs, plus how to score it."""

from __future__ import annotations

import difflib
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields, replace
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from tv_lens.errors import TvLensError
from tv_lens.tasks.filters import FilterReport, filter_pairs, protocol_problem
from tv_lens.tasks.scoring import get_scorer
from tv_lens.tasks.texts import escape_controls, foreign_break_problem, shown

CATEGORIES = ("algorithmic", "translation", "linguistic", "knowledge", "custom")
UNFILTERED_SCORERS = frozenset({"prefix"})

Pairs = Mapping[str, tuple[str, ...]]


class UnknownQueryError(TvLensError, KeyError):
    """A query that is not an input of the task: a `TvLensError` and a `KeyError`, so either `except` catches it.

    Its message is one line, printed as it is (a bare `KeyError` would print it quoted).
    """

    def __str__(self) -> str:
        return BaseException.__str__(self)


def _check_text(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise TvLensError(f"{what} must be a string, got {type(value).__name__} {value!r}")
    if not value.strip():
        raise TvLensError(f"{what} is empty: give the text")
    if value != value.strip():
        raise TvLensError(f"{what} {value!r} has leading or trailing whitespace; strip it")
    problem = foreign_break_problem(value, newline_allowed=True)
    if problem:  # a `\n` is the prompt format's to judge (`PromptFormat.text_problem`)
        raise TvLensError(f"{what} {value!r} {problem}")
    return value


def normalize_pairs(pairs: Mapping[str, str | Sequence[str]]) -> dict[str, tuple[str, ...]]:
    """Validate `{input: output or [outputs]}` and return `{input: (canonical, *others)}`."""
    normalized: dict[str, tuple[str, ...]] = {}
    for raw_input, raw_outputs in pairs.items():
        source = _check_text(raw_input, "input")
        if isinstance(raw_outputs, str):
            outputs: tuple[str, ...] = (raw_outputs,)
        elif isinstance(raw_outputs, (list, tuple)):
            outputs = tuple(raw_outputs)
        else:
            raise TvLensError(f"output of {source!r} must be a string or a list of strings, got {raw_outputs!r}")
        if not outputs:
            raise TvLensError(f"input {source!r} has no output: give it at least one")
        checked = [_check_text(output, f"output of {source!r}") for output in outputs]
        normalized[source] = tuple(dict.fromkeys(checked))
    return normalized


@dataclass(frozen=True)
class Task:
    """A task: inputs, the accepted outputs of each (the first canonical), its category and how it is scored.

    The protocol depends on the scorer alone, never on the category or where the task came from: the
    single-token filter is on except for prefix scoring (the paper filters exact-match tasks and scores
    knowledge by prefix). Built-in tasks come from `get_task`, your own from `register_task` or `load_task`.

    Attributes:
        name: the task's name: non-empty, printable, without surrounding spaces.
        category: one of "algorithmic", "translation", "linguistic", "knowledge", "custom".
        description: what the task asks, in a few words.
        pairs: `{input: output or [outputs]}`; stored read-only as `{input: (canonical, *others)}`. Texts
            are non-empty and stripped; an input needs at least one output.
        scoring: the name of the scorer of a first-token prediction: "exact" (stripped equality with an
            accepted output), "prefix" (prediction and an output are prefixes of one another: "Par" for
            "Paris") or "any_of" (as "exact"); others via `tv_lens.tasks.register_scorer`.
        single_token_filter: keep only the pairs whose canonical output is one token for the model's
            tokenizer (`filtered`); None (default) means on unless `scoring` is "prefix".
        leading_space: the prompt variant: False for `x->y`, True for ` x-> y` (the paper's variant B);
            None lets `filtered` choose it for the model's tokenizer by the paper's rule.

    Raises:
        TvLensError: an empty or malformed name, text or pairs; an unknown category or scorer.

    Example:
        ```python
        task = tv.Task("caps", "custom", "capital letters", {"a": "A", "b": ["B", "b"]})
        task.score("b", "b")  # True: "b" is an accepted answer to "b"
        ```
    """

    name: str
    category: str
    description: str
    pairs: Pairs
    scoring: str = "exact"
    single_token_filter: bool | None = None
    leading_space: bool | None = None

    if TYPE_CHECKING:  # the constructor takes outputs as a string or a list; __post_init__ normalizes them
        def __init__(self, name: str, category: str, description: str, pairs: Mapping[str, str | Sequence[str]],
                     scoring: str = "exact", single_token_filter: bool | None = None,
                     leading_space: bool | None = None) -> None: ...

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip() or self.name != self.name.strip():
            raise TvLensError(f"task name must be a non-empty string without surrounding spaces, got {self.name!r}")
        if escape_controls(self.name) != self.name:
            raise TvLensError(f"task name {self.name!r} contains control characters: name it in printable "
                              f"characters (e.g. {escape_controls(self.name)!r})")
        if self.category not in CATEGORIES:
            raise TvLensError(f"task {self.name!r}: unknown category {self.category!r}; valid: {', '.join(CATEGORIES)}")
        get_scorer(self.scoring)
        try:
            pairs = normalize_pairs(self.pairs)
        except TvLensError as error:
            raise TvLensError(f"task {self.name!r}: {error}") from None
        if not pairs:
            raise TvLensError(f"task {self.name!r} has no pairs: give it at least one {{input: output}} pair")
        object.__setattr__(self, "pairs", MappingProxyType(pairs))
        if self.single_token_filter is None:
            object.__setattr__(self, "single_token_filter", self.scoring not in UNFILTERED_SCORERS)

    def __len__(self) -> int:
        return len(self.pairs)

    @property
    def digest(self) -> str:
        """16 hex digits of SHA-256 over everything that shapes results on this task (name, category, pairs,
        scoring, filter, prompt variant): saved results of a task whose contents changed are not reused."""
        content = {"name": self.name, "category": self.category, "scoring": self.scoring,
                   "single_token_filter": self.single_token_filter, "leading_space": self.leading_space,
                   "pairs": sorted((x, list(ys)) for x, ys in self.pairs.items())}
        return hashlib.sha256(json.dumps(content, ensure_ascii=False).encode()).hexdigest()[:16]

    @property
    def inputs(self) -> list[str]:
        """All inputs, sorted: seeded sampling never depends on insertion or hash order."""
        return sorted(self.pairs)

    def answers(self, query: str) -> tuple[str, ...]:
        """The accepted outputs of an input, the canonical one first.

        Args:
            query: an input of the task.

        Returns:
            The outputs, canonical first.

        Raises:
            UnknownQueryError: `query` is not an input of the task (a `TvLensError` and a `KeyError`).
        """
        try:
            return self.pairs[query]
        except (KeyError, TypeError):  # TypeError: an unhashable query, e.g. a list
            if not isinstance(query, str):
                raise UnknownQueryError(f"a query is a string, not {type(query).__name__}: pass one of the inputs "
                                        f"of task {self.name!r} (task.inputs)") from None
            near = difflib.get_close_matches(query, self.pairs, n=1)
            hint = f" (did you mean {near[0]!r}?)" if near else ""
            raise UnknownQueryError(f"{shown(query)} is not an input of task {self.name!r}{hint}: pass one of its "
                                    f"inputs (task.inputs)") from None

    def canonical(self, query: str) -> str:
        """The canonical output of an input: the one demonstrations show.

        Args:
            query: an input of the task.

        Returns:
            The first accepted output.

        Raises:
            UnknownQueryError: `query` is not an input of the task (a `TvLensError` and a `KeyError`).
        """
        return self.answers(query)[0]

    def score(self, prediction: str, query: str) -> bool:
        """Whether a prediction is a correct answer to an input, by the task's scorer.

        Args:
            prediction: the predicted text (e.g. the decoded first token).
            query: the input it answers.

        Returns:
            True when the scorer accepts `prediction` for one of the input's outputs.

        Raises:
            UnknownQueryError: `query` is not an input of the task (a `TvLensError` and a `KeyError`).
        """
        return get_scorer(self.scoring)(prediction, self.answers(query))

    def with_pairs(self, pairs: Mapping[str, str | Sequence[str]], **changes: Any) -> Task:
        """A copy of this task with other pairs, and optionally other fields.

        Args:
            pairs: the new `{input: output or [outputs]}`.
            **changes: other fields to change, by name (e.g. `name="antonyms_small"`).

        Returns:
            The new task, validated as any `Task`.
        """
        current = {f.name: getattr(self, f.name) for f in fields(self)}
        return type(self)(**{**current, "pairs": pairs, **changes})  # not replace(), which types pairs as normalized

    def filtered(self, tokenizer: Any, single_token_filter: bool | None = None,
                 leading_space: bool | None = None) -> Task:
        """This task as a model with `tokenizer` reads it under the paper's protocol.

        The prompt variant is chosen by the paper's rule (variant B when it keeps at least 70% as many
        single-token answers as A), and with the filter on only the pairs whose canonical output is one
        token after the arrow are kept. Filtering a filtered task changes nothing.

        Args:
            tokenizer: the model's tokenizer (`model.tokenizer`, or `load_tokenizer(spec)`).
            single_token_filter: override the task's own filter setting; None keeps it.
            leading_space: force the prompt variant (True: ` x-> y`); None lets the rule choose.

        Returns:
            A task with the kept pairs, its `leading_space` and `single_token_filter` set.

        Raises:
            TvLensError: the filter keeps nothing, or the filter is off while most answers are several tokens
                and the task is scored by exact match (a first token could almost never be right); the
                message names the fixes.
        """
        task = self if leading_space is None else replace(self, leading_space=leading_space)
        report, kept = task._filter(tokenizer, single_token_filter)
        problem = protocol_problem(report, task.scoring)
        if problem:
            raise TvLensError(problem)
        return task.with_pairs(kept, leading_space=report.leading_space, single_token_filter=report.applied)

    def filter_report(self, tokenizer: Any, single_token_filter: bool | None = None) -> FilterReport:
        """How the single-token filter would read this task for a tokenizer, without refusing anything.

        Args:
            tokenizer: the model's tokenizer.
            single_token_filter: override the task's own filter setting; None keeps it.

        Returns:
            The pair count, the single-token counts in variants A and B, the variant chosen, whether the
                filter applied and how many pairs it keeps.
        """
        return self._filter(tokenizer, single_token_filter)[0]

    def _filter(self, tokenizer: Any, single_token_filter: bool | None) -> tuple[FilterReport, dict]:
        use_filter = self.single_token_filter if single_token_filter is None else single_token_filter
        assert use_filter is not None, "__post_init__ sets the scorer's default"
        return filter_pairs(self.name, self.pairs, tokenizer, leading_space=self.leading_space,
                            single_token_filter=use_filter)
