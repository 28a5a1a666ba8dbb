"""Load user tasks from JSON, JSONL or CSV files, with one-line errors that say what to fix.

Accepted layouts: a JSON object `{input: output or [outputs]}`; a JSON list of
`{"input": ..., "output": ...}` (output a string or a list of strings; or `"outputs": [...]`); JSONL
with one such object per line; CSV with `input` and `output` columns (a header row; other columns
are ignored). Values are stripped. A `\n` inside a value loads (the prompt format a task is written in
judges it: `tv_lens.tasks.texts`); any other line break is refused. An input given more than once (a
repeated JSON key, a repeated row) keeps all its outputs as accepted alternatives, the first one
canonical, with one warning line.
"""

from __future__ import annotations

import csv
import io
import json
import warnings
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Any

from tv_lens.errors import TvLensError
from tv_lens.tasks.task import Task
from tv_lens.tasks.texts import escape_controls, foreign_break_problem, shown

FORMATS = (".json", ".jsonl", ".csv")


class TaskFileError(TvLensError):
    """A task file that cannot be read; the message names the file, the row and the fix."""


class TaskFileWarning(UserWarning):
    """A task file that loaded, but not one pair per row: repeated inputs were merged."""


@dataclass(frozen=True)
class FileCounts:
    """What a task file held: pairs read (keys, records or rows) and those merged into an earlier
    pair of the same input."""

    read: int
    merged: int
    alternatives_added: int


@dataclass(frozen=True)
class _Row:
    input: str
    outputs: tuple[str, ...]


class _JsonObject:
    """A JSON object kept as its (key, value) list, so duplicate keys can be reported."""

    def __init__(self, pairs: list[tuple[str, Any]]) -> None:
        self.pairs = pairs

    def __repr__(self) -> str:
        return repr(dict(self.pairs))


def _json_kind(value: Any) -> str:
    kinds = {bool: "boolean", int: "number", float: "number", type(None): "null", list: "list", _JsonObject: "object"}
    return kinds.get(type(value), type(value).__name__)


def _text(path: Path, where: str, field: str, value: Any) -> str:
    if not isinstance(value, str):
        raise TaskFileError(f"{path}: {where}: {field} must be a string, got {_json_kind(value)} {value!r}")
    value = value.strip()
    if not value:
        raise TaskFileError(f"{path}: {where}: {field} is empty")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise TaskFileError(f"{path}: {where}: {field} {value!r} is not valid Unicode (a lone surrogate)") from None
    problem = foreign_break_problem(value, newline_allowed=True)
    if problem:  # a `\n` is the prompt format's to judge (`PromptFormat.text_problem`)
        raise TaskFileError(f"{path}: {where}: {field} {shown(value)} {problem}")
    return value


def _outputs(path: Path, where: str, value: Any) -> tuple[str, ...]:
    values = value if isinstance(value, list) else [value]
    if not values:
        raise TaskFileError(f"{path}: {where}: the list of outputs is empty")
    return tuple(dict.fromkeys(_text(path, where, "output", output) for output in values))


def _parse_json(path: Path, text: str, line: int | None = None) -> Any:
    prefix = f"{path}: line {line}: " if line is not None else f"{path}: "
    try:
        return json.loads(text, object_pairs_hook=_JsonObject)
    except json.JSONDecodeError as error:
        place = f"line {line}" if line is not None else f"line {error.lineno} column {error.colno}"
        raise TaskFileError(f"{path}: {place}: invalid JSON ({error.msg})") from None
    except RecursionError:
        raise TaskFileError(f"{prefix}invalid JSON (nested too deeply)") from None
    except ValueError as error:  # e.g. an integer of more digits than Python converts
        raise TaskFileError(f"{prefix}invalid JSON ({error})") from None


def _record_row(path: Path, where: str, record: Any) -> _Row:
    if not isinstance(record, _JsonObject):
        raise TaskFileError(f'{path}: {where}: expected an object {{"input": ..., "output": ...}}, got {record!r}')
    fields = dict(record.pairs)
    if "input" not in fields or ("output" in fields) == ("outputs" in fields):
        raise TaskFileError(
            f'{path}: {where}: needs "input" and exactly one of "output" or "outputs", got {sorted(fields)}')
    source = _text(path, where, "input", fields["input"])
    if "outputs" in fields and not isinstance(fields["outputs"], list):
        raise TaskFileError(f'{path}: {where}: "outputs" must be a list of strings')
    return _Row(source, _outputs(path, where, fields.get("output", fields.get("outputs"))))


def _json_rows(path: Path, text: str) -> list[_Row]:
    document = _parse_json(path, text)
    if isinstance(document, _JsonObject):
        rows = []
        for key, value in document.pairs:
            where = f"key {key!r}"
            if isinstance(value, list) and not all(isinstance(v, str) for v in value):
                raise TaskFileError(f"{path}: {where}: outputs must be strings, got {value!r}")
            rows.append(_Row(_text(path, where, "input", key), _outputs(path, where, value)))
        return rows
    if isinstance(document, list):
        return [_record_row(path, f"item {index}", record) for index, record in enumerate(document, 1)]
    raise TaskFileError(
        f"{path}: expected a JSON object {{input: output}} or a list of objects, got {type(document).__name__}")


def _jsonl_rows(path: Path, text: str) -> list[_Row]:
    return [
        _record_row(path, f"line {number}", _parse_json(path, line, number))
        for number, line in enumerate(text.split("\n"), 1)
        if line.strip()
    ]


def _csv_rows(path: Path, text: str) -> list[_Row]:
    reader = csv.DictReader(io.StringIO(text), strict=True)
    try:
        header = [name.strip() for name in reader.fieldnames or []]
        if "input" not in header or "output" not in header:
            raise TaskFileError(f"{path}: the first row must name the columns input and output, got {header}")
        for name in ("input", "output"):
            if header.count(name) > 1:
                raise TaskFileError(f"{path}: the first row names the column {name} twice; keep one "
                                    "(give another output of an input as another row with the same input)")
        reader.fieldnames = header
        rows = []
        for record in reader:
            where = f"row {reader.line_num}"
            if record.get("input") is None or record.get("output") is None:
                raise TaskFileError(f"{path}: {where}: missing input or output cell")
            source = _text(path, where, "input", record["input"])
            rows.append(_Row(source, _outputs(path, where, record["output"])))
        return rows
    except csv.Error as error:
        raise TaskFileError(f"{path}: row {reader.line_num + 1}: invalid CSV ({error})") from None


def _merge(path: Path, rows: list[_Row]) -> tuple[dict[str, tuple[str, ...]], FileCounts]:
    """Pairs by input, a repeated input's outputs appended as alternatives (first stays canonical)."""
    pairs: dict[str, tuple[str, ...]] = {}
    added = 0
    for row in rows:
        before = pairs.get(row.input, ())
        pairs[row.input] = tuple(dict.fromkeys(before + row.outputs))
        added += len(pairs[row.input]) - len(before) if before else 0
    if not pairs:
        raise TaskFileError(f"{path}: contains no pairs")
    return pairs, FileCounts(read=len(rows), merged=len(rows) - len(pairs), alternatives_added=added)


def _read(path: Path) -> str:
    if not path.exists():
        raise TaskFileError(f"{path}: no such file")
    if not path.is_file():
        raise TaskFileError(f"{path}: not a file")
    if path.suffix.lower() not in FORMATS:
        raise TaskFileError(f"{path}: unsupported file type {path.suffix!r}; use one of {', '.join(FORMATS)}")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise TaskFileError(f"{path}: not UTF-8 text") from None
    except OSError as error:
        raise TaskFileError(f"{path}: cannot read ({error.strerror})") from None
    if not text.strip():
        raise TaskFileError(f"{path}: file is empty")
    return text


def read_pairs(path: str | PathLike[str]) -> tuple[dict[str, tuple[str, ...]], FileCounts]:
    """The pairs of a .json, .jsonl or .csv file, `{input: (canonical, *alternatives)}`, and what the
    file held (pairs read, and those merged into an earlier pair of the same input)."""
    path = Path(path)
    text = _read(path)
    parse = {".json": _json_rows, ".jsonl": _jsonl_rows, ".csv": _csv_rows}[path.suffix.lower()]
    return _merge(path, parse(path, text))


def load_task(
    path: str | PathLike[str],
    scoring: str = "exact",
    name: str | None = None,
    category: str = "custom",
    description: str = "",
    single_token_filter: bool | None = None,
) -> Task:
    """Read a task from a .json, .jsonl or .csv file (not registered: see `register_task`).

    Layouts: a JSON object `{input: output or [outputs]}`; a JSON list, or JSONL lines, of
    `{"input": ..., "output": ...}` (or `"outputs": [...]`); CSV with `input` and `output` columns. Values
    are stripped. An input given more than once keeps all its outputs as accepted alternatives (the first
    canonical), with one `TaskFileWarning`. With the defaults the task gets the paper's protocol, as a
    built-in task of the same pairs and scoring does.

    Args:
        path: the file; its suffix (any case) says the layout.
        scoring: the scorer of the answers: "exact", "prefix" or "any_of" (see `Task`).
        name: the task's name; default the file's stem (control characters escaped).
        category: the task's category (see `Task`).
        description: what the task asks; default "loaded from <file name>".
        single_token_filter: the filter setting; None means on unless scored by prefix.

    Returns:
        The task.

    Raises:
        TaskFileError: a missing, empty, unreadable or malformed file, an unsupported suffix, or pairs that
            make no valid task; the message names the file, the row and the fix.
    """
    path = Path(path)
    pairs, counts = read_pairs(path)
    if counts.merged:
        repeat = "pair repeats" if counts.merged == 1 else "pairs repeat"
        outputs = "output" if counts.alternatives_added == 1 else "outputs"
        warnings.warn(f"{path}: {counts.merged} {repeat} an earlier input; merged into it, adding "
                      f"{counts.alternatives_added} accepted alternative {outputs} (the first output stays canonical)",
                      TaskFileWarning, stacklevel=2)
    try:
        return Task(
            name=name or escape_controls(path.stem),
            category=category,
            description=description or f"loaded from {path.name}",
            pairs=pairs,
            scoring=scoring,
            single_token_filter=single_token_filter,
        )
    except ValueError as error:
        raise TaskFileError(f"{path}: {error}") from None
