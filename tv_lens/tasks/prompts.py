"""Prompt formats: the task-vector paper's `example:{x}->{y}` lines joined by newlines, then
`example:{x}->` (the default), and the function-vector paper's `Q: {x}\nA: {y}` blocks (`QA_FORMAT`)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tv_lens.tasks import Item, Task

_FIELD = re.compile(r"\{([xy])\}")


@dataclass(frozen=True)
class PromptFormat:
    """How demonstrations and the query are written.

    `leading_space=True` is the paper's variant B: input and output both get a leading space
    (`example: go-> going`). Only `{x}` and `{y}` are substituted; other braces stay literal.
    """

    example_template: str = "example:{x}->{y}"
    query_template: str = "example:{x}->"
    separator: str = "\n"
    leading_space: bool = False

    def __post_init__(self) -> None:
        if "{x}" not in self.example_template or "{y}" not in self.example_template:
            raise ValueError(f"example_template must contain {{x}} and {{y}}, got {self.example_template!r}")
        if "{x}" not in self.query_template or "{y}" in self.query_template:
            raise ValueError(f"query_template must contain {{x}} and not {{y}}, got {self.query_template!r}")

    @classmethod
    def for_task(cls, task: Task, **changes: object) -> PromptFormat:
        """The default format in the variant (leading space or not) that `task.filtered()` chose."""
        if task.leading_space is None:
            raise ValueError(f"task {task.name!r} has no prompt variant yet: pass task.filtered(model.tokenizer), "
                             "which chooses it for the model's tokenizer")
        return cls(leading_space=task.leading_space, **changes)

    def with_leading_space(self, leading_space: bool) -> PromptFormat:
        """A copy of this format with variant B switched on or off."""
        return replace(self, leading_space=leading_space)

    def _fill(self, template: str, x: str, y: str = "") -> str:
        space = " " if self.leading_space else ""
        values = {"x": space + x, "y": space + y}
        return _FIELD.sub(lambda match: values[match.group(1)], template)

    def demo(self, x: str, y: str) -> str:
        """One demonstration line, e.g. `example:go->going`."""
        return self._fill(self.example_template, x, y)

    def query(self, x: str) -> str:
        """The query line, e.g. `example:go->` (the model continues after the arrow)."""
        return self._fill(self.query_template, x)

    def render(self, demos: Sequence[tuple[str, str]], query: str) -> str:
        """Demonstration lines then the query line, joined by the separator (no trailing newline)."""
        return self.separator.join([*(self.demo(x, y) for x, y in demos), self.query(query)])

    def icl_prompt(self, item: Item) -> str:
        """The in-context-learning prompt of an item: its demonstrations, then its query."""
        return self.render(item.demos, item.query)

    def dummy_prompts(self, item: Item) -> list[str]:
        """The prompts θ is learned from: the item's demonstrations followed by each dummy query."""
        return [self.render(item.demos, dummy) for dummy in item.dummies]

    def zero_shot_prompt(self, item: Item) -> str:
        """The bare query with no demonstrations (baseline, and where θ is applied)."""
        return self.query(item.query)


QA_FORMAT = PromptFormat(example_template="Q:{x}\nA:{y}", query_template="Q:{x}\nA:", separator="\n\n",
                         leading_space=True)
"""Todd et al. 2024: `Q: {x}\nA: {y}` per demonstration, blocks separated by a blank line, the
query `Q: {x}\nA:` (variant B of the filter: the answer follows a space)."""
