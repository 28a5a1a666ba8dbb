"""Prompt formats: the task-vector paper's `example:{x}->{y}` lines joined by newlines, then
`example:{x}->` (the default), and the function-vector paper's `Q: {x}\nA: {y}` blocks (`QA_FORMAT`).

Each format owns the rule for the texts it can hold (`text_problem`, built on `tv_lens.tasks.texts`): a
line break in a text is refused where the format would read it as a separator. `check_text` applies it
to a query, a demonstration or a dummy query, `prompt_ready` to a task's pairs (and skips the pairs too
long for the model's context)."""

from __future__ import annotations

import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from tv_lens.errors import TvLensError, TvLensTypeError
from tv_lens.tasks.texts import foreign_break_problem, shown

if TYPE_CHECKING:
    from tv_lens.tasks import Item, Task

_FIELD = re.compile(r"\{([xy])\}")
_BLANK_LINE = re.compile(r"\n[ \t]*\n")


class PromptTextError(TvLensError):
    """A text that cannot go into a prompt of the format asked for; the message names the text."""


class PairsSkippedWarning(UserWarning):
    """Some pairs of a task were too long for the model's context and were left out."""


@dataclass(frozen=True)
class PromptFormat:
    """How demonstrations and the query are written into a prompt.

    The default is the task-vector paper's: `example:{x}->{y}` lines joined by newlines, then
    `example:{x}->`. `tv_lens.tasks.prompts.QA_FORMAT` is the function-vector paper's `Q: {x}\\nA: {y}`
    blocks separated by a blank line. Only `{x}` and `{y}` are substituted; other braces stay literal.

    Attributes:
        example_template: one demonstration; must contain `{x}` and `{y}`.
        query_template: the query the model continues; must contain `{x}` and not `{y}`.
        separator: what joins the demonstrations and the query.
        leading_space: the paper's variant B: input and output both get a leading space
            (`example: go-> going`).

    Raises:
        TvLensError: a template without its fields.
    """

    example_template: str = "example:{x}->{y}"
    query_template: str = "example:{x}->"
    separator: str = "\n"
    leading_space: bool = False

    def __post_init__(self) -> None:
        if "{x}" not in self.example_template or "{y}" not in self.example_template:
            raise TvLensError(f"example_template must contain {{x}} and {{y}}, got {self.example_template!r}")
        if "{x}" not in self.query_template or "{y}" in self.query_template:
            raise TvLensError(f"query_template must contain {{x}} and not {{y}}, got {self.query_template!r}")

    @classmethod
    def for_task(cls, task: Task, **changes: str) -> PromptFormat:
        """The default format in the prompt variant that `task.filtered()` chose for the model.

        Args:
            task: a task filtered for the model's tokenizer (`task.filtered(model.tokenizer)`).
            **changes: other fields of the format, by name (e.g. `separator="\\n\\n"`).

        Returns:
            The format, with the task's `leading_space`.

        Raises:
            TvLensError: the task has no prompt variant yet (it was not filtered).
        """
        if task.leading_space is None:
            raise TvLensError(f"task {task.name!r} has no prompt variant yet: pass task.filtered(model.tokenizer), "
                              "which chooses it for the model's tokenizer")
        return cls(leading_space=task.leading_space, **changes)

    @property
    def takes_line_breaks(self) -> bool:
        """Whether a text may hold a single `\\n`: yes where the separator is a blank line (the Q:/A: format)
        or holds no line break; no where examples are told apart by one line break (the arrow format)."""
        return "\n" not in self.separator or bool(_BLANK_LINE.search(self.separator))

    def line_markers(self) -> tuple[str, ...]:
        """How the templates' lines begin before their field (`Q:`, `A:`): a text line that begins so
        would read as a line of the format.

        Returns:
            The distinct non-empty line starts, in template order.
        """
        lines = [*self.example_template.split("\n"), *self.query_template.split("\n")]
        return tuple(dict.fromkeys(m for m in (_FIELD.split(line)[0].strip() for line in lines) if m))

    def text_problem(self, text: str) -> str | None:
        """Why a text cannot be an input or output in this format, or None if it can.

        Refused: a line break other than `\\n`; a `\\n` where the format separates examples by one; a blank
        line where it separates them by one; a line that starts like one of the format's lines; the
        separator itself.

        Args:
            text: an input or output.

        Returns:
            The reason, as the rest of a one-line message; None when the format can hold `text`.
        """
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

    def check_text(self, text: Any, what: str) -> str:
        """Check a text before it goes into a prompt of this format.

        Args:
            text: a query, a demonstration's input or output, or a dummy query.
            what: how the error names the text (e.g. "query 3").

        Returns:
            `text`, unchanged.

        Raises:
            TvLensTypeError: `text` is not a string.
            TvLensError: `text` is empty or whitespace only.
            PromptTextError: the format cannot hold `text` (`text_problem` says why).
        """
        if not isinstance(text, str):
            raise TvLensTypeError(f"{what} is a {type(text).__name__}, not a string")
        if not text.strip():
            raise TvLensError(f"{what} is empty or whitespace only: give the input of the task")
        problem = self.text_problem(text)
        if problem:
            raise PromptTextError(f"{what} {shown(text)} {problem}")
        return text

    def with_leading_space(self, leading_space: bool) -> PromptFormat:
        """A copy of this format with the paper's variant B switched on or off.

        Args:
            leading_space: True for variant B (` x-> y`), False for A (`x->y`).

        Returns:
            The new format.
        """
        return replace(self, leading_space=leading_space)

    def _fill(self, template: str, x: str, y: str = "") -> str:
        space = " " if self.leading_space else ""
        values = {"x": space + x, "y": space + y}
        return _FIELD.sub(lambda match: values[match.group(1)], template)

    def demo(self, x: str, y: str) -> str:
        """One demonstration, e.g. `example:go->going`.

        Args:
            x: the demonstration's input.
            y: its output.

        Returns:
            `example_template` filled in.
        """
        return self._fill(self.example_template, x, y)

    def query(self, x: str) -> str:
        """The query, e.g. `example:go->` (the model continues after the arrow).

        Args:
            x: the query's input.

        Returns:
            `query_template` filled in.
        """
        return self._fill(self.query_template, x)

    def render(self, demos: Sequence[tuple[str, str]], query: str) -> str:
        """A whole prompt: the demonstrations, then the query, joined by the separator (no trailing newline).

        Args:
            demos: (input, output) pairs, in order; empty for a zero-shot prompt.
            query: the query's input.

        Returns:
            The prompt text.
        """
        return self.separator.join([*(self.demo(x, y) for x, y in demos), self.query(query)])

    def icl_prompt(self, item: Item) -> str:
        """The in-context-learning prompt of an item: its demonstrations, then its query.

        Args:
            item: an item of `sample_splits` (or of the function-vector protocol).

        Returns:
            The prompt text.
        """
        return self.render(item.demos, item.query)

    def dummy_prompts(self, item: Item) -> list[str]:
        """The prompts θ is learned from: the item's demonstrations followed by each of its dummy queries.

        Args:
            item: an item with dummy queries.

        Returns:
            One prompt per dummy query.
        """
        return [self.render(item.demos, dummy) for dummy in item.dummies]

    def zero_shot_prompt(self, item: Item) -> str:
        """The bare query with no demonstrations: the zero-shot baseline's prompt, and where θ is applied.

        Args:
            item: an item.

        Returns:
            The query prompt of the item's query.
        """
        return self.query(item.query)


QA_FORMAT = PromptFormat(example_template="Q:{x}\nA:{y}", query_template="Q:{x}\nA:", separator="\n\n",
                         leading_space=True)
"""Todd et al. 2024: `Q: {x}\nA: {y}` per demonstration, blocks separated by a blank line, the
query `Q: {x}\nA:` (variant B of the filter: the answer follows a space)."""


def check_pairs(task: Task, fmt: PromptFormat) -> None:
    """Refuse a task whose inputs or outputs the prompt format cannot hold: one line naming the first
    such text and how many pairs have one."""
    bad = []
    for x, ys in task.pairs.items():
        problems = [(what, text, fmt.text_problem(text))
                    for what, text in [("input", x), *(("output of " + shown(x), y) for y in ys)]]
        bad += [found for found in problems if found[2]][:1]
    if bad:
        what, text, problem = bad[0]
        others = f" ({len(bad)} of {len(task)} pairs have such a text)" if len(bad) > 1 else ""
        raise PromptTextError(f"task {task.name!r}: {what} {shown(text)} {problem}{others}")


def demonstration_share(limit: int, n_shots: int) -> int:
    """The tokens one demonstration may take so that any prompt of `n_shots` demonstrations and a
    query (each no longer than a demonstration) fits `limit` with a BOS token."""
    return (limit - 1) // (n_shots + 1)


def fitting_pairs(task: Task, fmt: PromptFormat, tokenizer: Any, limit: int | None, n_shots: int) -> Task:
    """`task` less the pairs whose demonstration (`fmt.demo`, with its separator) or query takes more than its
    share of the model's token `limit` (`demonstration_share`), so that no prompt built from the
    task can exceed it; skipped pairs are named in one `PairsSkippedWarning` line, and a task left
    with none is refused."""
    if not limit:
        return task
    share = demonstration_share(limit, n_shots)
    inputs = list(task.pairs)
    demos = _token_counts(tokenizer, [fmt.demo(x, task.canonical(x)) + fmt.separator for x in inputs])
    queries = _token_counts(tokenizer, [fmt.query(x) for x in inputs])
    lengths = [max(d, q) for d, q in zip(demos, queries)]
    long = [x for x, n in zip(inputs, lengths) if n > share]
    if not long:
        return task
    how = (f"a demonstration may take {share} tokens ({n_shots} demonstrations and a query in this model's "
           f"limit of {limit})")
    if len(long) == len(inputs):
        raise TvLensError(f"task {task.name!r}: none of its {len(inputs)} pairs fits: {how}; shorten the pairs "
                          f"or use fewer demonstrations")
    longest = max(long, key=lambda x: lengths[inputs.index(x)])
    warnings.warn(f"task {task.name!r}: {len(long)} of {len(inputs)} pairs skipped as too long for the model "
                  f"({how}), the longest {shown(longest)} with {max(lengths)} tokens", PairsSkippedWarning,
                  stacklevel=2)
    return task.with_pairs({x: ys for x, ys in task.pairs.items() if x not in set(long)})


def _token_counts(tokenizer: Any, texts: Sequence[str]) -> list[int]:
    return [len(ids) for ids in tokenizer(list(texts), add_special_tokens=False)["input_ids"]]


def prompt_ready(task: Task, fmt: PromptFormat, tokenizer: Any, limit: int | None, n_shots: int) -> Task:
    """`task` ready to be written in `fmt` for a model of token `limit`: refused if a text does not fit
    the format (`check_pairs`), its pairs too long for the model skipped (`fitting_pairs`)."""
    check_pairs(task, fmt)
    return fitting_pairs(task, fmt, tokenizer, limit, n_shots)
