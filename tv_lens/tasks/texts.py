"""The text rule's part that holds in every prompt format, and how texts are read and shown.

The one rule for the texts that go into prompts (queries from the command line, stdin or the API,
demonstrations, dummy queries, task pairs), whatever path they come by:
- A line break of a kind other than `\\n` (any other character `str.splitlines` splits at: `\\r`, form
  feed, U+2028, ...) is refused in every prompt format (`foreign_break_problem`): readers disagree on it
  (stdin splits there, the prompt does not), so what the model saw could not be told from what was read.
- `\\n` is refused where the prompt format would read it as a separator: each `PromptFormat` owns that part
  (`text_problem`; the arrow format's examples are single lines; the Q:/A: format takes single line breaks
  and refuses blank lines and lines that start like its own `Q:` / `A:` lines). Every path goes through
  `PromptFormat.check_text` (a query, a demonstration, a dummy query) or `tv_lens.tasks.prompts.prompt_ready`
  (a task's pairs, which also skips the pairs too long for the model's context, with one warning line).
- Text read from stdin loses a leading byte-order mark, as task files do (`stdin_lines`), and names
  printed to a terminal have their control characters escaped (`escape_controls`).
"""

from __future__ import annotations

import unicodedata

from tv_lens.errors import TvLensError

LINE_BREAKS = "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"
"""Every character `str.splitlines` splits at."""
FOREIGN_BREAKS = LINE_BREAKS.replace("\n", "")
"""The line breaks no prompt format writes: refused everywhere."""
_CONTROL_NAMES = {"\r": "CARRIAGE RETURN", "\x0b": "LINE TABULATION", "\x0c": "FORM FEED",
                  "\x1c": "FILE SEPARATOR", "\x1d": "GROUP SEPARATOR", "\x1e": "RECORD SEPARATOR",
                  "\x85": "NEXT LINE"}
_ESCAPED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})
SHOWN = 40  # characters of a text quoted in a message


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


def stdin_lines(data: bytes, source: str = "stdin") -> list[str]:
    """The non-blank lines of UTF-8 `data` (one query each), stripped: split at `\\n` only, a leading
    byte-order mark dropped (as in task files); another line break inside a line stays, for the text
    rule to refuse with the line named."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise TvLensError(f"{source} is not UTF-8 text (byte {err.start}): give one UTF-8 query per line") from None
    return [line.strip() for line in text.split("\n") if line.strip()]
