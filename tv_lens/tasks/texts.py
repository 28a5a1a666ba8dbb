"""The one rule for the texts that go into prompts (queries from the command line, stdin or the API,
demonstrations, dummy queries, task pairs), whatever path they come by.

- A line break of a kind other than `\\n` (any other character `str.splitlines` splits at: `\\r`, form
  feed, U+2028, ...) is refused in every prompt format: readers disagree on it (stdin splits there,
  the prompt does not), so what the model saw could not be told from what was read.
- `\\n` is refused where the prompt format would read it as a separator (`PromptFormat.text_problem`:
  the arrow format's examples are single lines; the Q:/A: format takes single line breaks and refuses
  blank lines and lines that start like its own `Q:` / `A:` lines).
- A task's pair too long for the model's context is skipped with one warning line before any batch
  is built (`fitting_pairs`); a user's query that is too long is refused (`tv_lens.task_vectors.queries`).
- Text read from stdin loses a leading byte-order mark, as task files do (`stdin_lines`), and names
  printed to a terminal have their control characters escaped (`escape_controls`).
"""

from __future__ import annotations

import unicodedata
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from tv_lens.errors import TvLensError

if TYPE_CHECKING:
    from tv_lens.tasks.prompts import PromptFormat
    from tv_lens.tasks.task import Task

LINE_BREAKS = "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"
"""Every character `str.splitlines` splits at."""
FOREIGN_BREAKS = LINE_BREAKS.replace("\n", "")
"""The line breaks no prompt format writes: refused everywhere."""
_CONTROL_NAMES = {"\r": "CARRIAGE RETURN", "\x0b": "LINE TABULATION", "\x0c": "FORM FEED",
                  "\x1c": "FILE SEPARATOR", "\x1d": "GROUP SEPARATOR", "\x1e": "RECORD SEPARATOR",
                  "\x85": "NEXT LINE"}
_ESCAPED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})
SHOWN = 40  # characters of a text quoted in a message


class PromptTextError(TvLensError):
    """A text that cannot go into a prompt of the format asked for; the message names the text."""


class PairsSkippedWarning(UserWarning):
    """Some pairs of a task were too long for the model's context and were left out."""


def shown(text: str, limit: int = SHOWN) -> str:
    """`text` quoted for a one-line message: its repr (line breaks and control characters escaped),
    cut after `limit` characters."""
    return repr(text) if len(text) <= limit else repr(text[:limit]) + f"... ({len(text)} characters)"


def escape_controls(text: str) -> str:
    """`text` safe to print on a terminal: control, format and line/paragraph-separator characters
    written as escapes (`\\x1b`, `\\u2028`), so a name cannot move the cursor or recolour the screen."""
    return "".join(repr(c)[1:-1] if unicodedata.category(c) in _ESCAPED_CATEGORIES else c for c in text)


def _break_name(char: str) -> str:
    return _CONTROL_NAMES.get(char) or unicodedata.name(char)


def foreign_break_problem(text: str, newline_allowed: bool) -> str | None:
    """Why `text` cannot go into any prompt (a line break other than `\\n`), or None."""
    found = next((c for c in text if c in FOREIGN_BREAKS), None)
    if found is None:
        return None
    fix = "\\n or a space" if newline_allowed else "a space"
    return (f"contains U+{ord(found):04X} ({_break_name(found)}), a line break that str.splitlines splits at "
            f"but the prompt does not: replace it with {fix}")


def prompt_text(fmt: PromptFormat, text: Any, what: str) -> str:
    """`text` (a query, a demonstration's input or output, a dummy query) if it is a non-blank string
    that the prompt format can hold; else a one-line error naming `what` and the text."""
    if not isinstance(text, str):
        raise TypeError(f"{what} is a {type(text).__name__}, not a string")
    if not text.strip():
        raise ValueError(f"{what} is empty or whitespace only: give the input of the task")
    return fmt.check_text(text, what)


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
        raise ValueError(f"task {task.name!r}: none of its {len(inputs)} pairs fits: {how}; shorten the pairs "
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


def stdin_lines(data: bytes, source: str = "stdin") -> list[str]:
    """The non-blank lines of UTF-8 `data` (one query each), stripped: split at `\\n` only, a leading
    byte-order mark dropped (as in task files); another line break inside a line stays, for the text
    rule to refuse with the line named."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise ValueError(f"{source} is not UTF-8 text (byte {err.start}): give one UTF-8 query per line") from None
    return [line.strip() for line in text.split("\n") if line.strip()]
