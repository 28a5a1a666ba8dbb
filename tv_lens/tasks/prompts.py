"""Prompt formats: the task-vector paper's `example:{x}->{y}` lines joined by newlines, then
`example:{x}->` (the default), and the function-vector paper's `Q: {x}\nA: {y}` blocks (`QA_FORMAT`).

Each format owns the rule for the texts it can hold (`text_problem`, see `tv_lens.tasks.texts`): a
line break in a text is refused where the format would read it as a separator."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from tv_lens.tasks.texts import PromptTextError, foreign_break_problem, shown

if TYPE_CHECKING:
    from tv_lens.tasks import Item, Task

_FIELD = re.compile(r"\{([xy])\}")
_BLANK_LINE = re.compile(r"\n[ \t]*\n")


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

    @property
    def takes_line_breaks(self) -> bool:
        """Whether a text may hold a single `\\n`: where the separator is a blank line (the Q:/A: format),
        or holds no line break at all; not where examples are told apart by one line break (the arrow)."""
        return "\n" not in self.separator or bool(_BLANK_LINE.search(self.separator))

    def line_markers(self) -> tuple[str, ...]:
        """How the templates' lines begin before their field (`Q:`, `A:`): a text line that begins so
        would read as a line of the format."""
        lines = [*self.example_template.split("\n"), *self.query_template.split("\n")]
        return tuple(dict.fromkeys(m for m in (_FIELD.split(line)[0].strip() for line in lines) if m))

    def text_problem(self, text: str) -> str | None:
        """Why `text` cannot be an input or output in this format (the rest of a one-line message), or
        None: a line break other than `\\n`; a `\\n` where the format separates examples by one; a blank
        line where it separates them by one; a line that starts like one of the format's lines; the
        separator itself."""
        problem = foreign_break_problem(text, self.takes_line_breaks)
        if problem:
            return problem
        if "\n" in text and not self.takes_line_breaks:
            return (f"contains a line break, which the prompt format {self.example_template!r} reads as the "
                    f"start of another example (its examples are one line each): remove it, or use the Q:/A: "
                    f"format, which takes single line breaks")
        if "\n" in self.separator and _BLANK_LINE.search(text):
            return (f"contains a blank line, which the prompt format {self.example_template!r} reads as the end "
                    f"of an example: keep single line breaks")
        lines = [line.lstrip() for line in text.split("\n")[1:]]
        marker = next((m for m in self.line_markers() for line in lines if line.startswith(m)), None)
        if marker:
            return (f"has a line starting with {marker!r}, which the prompt format {self.example_template!r} "
                    f"reads as one of its own lines: reword that line")
        if self.separator.strip() and self.separator in text:
            return f"contains the separator {self.separator!r} of the prompt format: remove it"
        return None

    def check_text(self, text: str, what: str) -> str:
        """`text`, if this format can hold it; else `PromptTextError`, one line naming `what` and the text."""
        problem = self.text_problem(text)
        if problem:
            raise PromptTextError(f"{what} {shown(text)} {problem}")
        return text

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
