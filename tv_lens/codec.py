"""Dataclasses as JSON objects: `Record.to_dict` writes a dataclass's fields in their order and
`Record.from_dict` reads them back checked against the field types (with the result's model depth
for `Layer` and `PerLayer`), so a results file is checked by the classes that hold it. Undefined
numbers are NaN in memory and null on disk; a bad value is a one-line ResultsError naming its field."""

from __future__ import annotations

import math
import types
from collections.abc import Sequence
from dataclasses import fields, is_dataclass
from functools import cache
from typing import Annotated, Any, ClassVar, TypeVar, Union, get_args, get_origin, get_type_hints

from tv_lens.errors import TvLensError


class ResultsError(TvLensError):
    """A results file is missing, unreadable or does not follow its schema."""


LAYER, PER_LAYER, FRACTION = "layer", "one entry per layer", "fraction"
T = TypeVar("T")
Layer = Annotated[int, LAYER]
"""A layer index of the results' model: 0 <= layer < n_layers."""
PerLayer = Annotated[list[T], PER_LAYER]
"""A list with one entry per layer of the results' model."""
Fraction = Annotated[float, FRACTION]
"""A number in [0, 1], or NaN (null on disk) when undefined."""
NOT_STORED = {"stored": False}
"""Field metadata of a dataclass field kept in memory only (left out of `to_dict`)."""


class Record:
    """A dataclass stored as a JSON object. `DERIVED` names properties written after the fields
    (with their types) that are checked on reading but recomputed, not stored."""

    DERIVED: ClassVar[dict[str, Any]] = {}

    def to_dict(self) -> dict:
        """The record as JSON-ready data, as results files store it.

        Returns:
            The fields in order (records nested as dicts, tuples as lists), then the derived values.
        """
        cls: type = type(self)  # as `type`: mypy takes type[Record] for unhashable (a dataclass's instances are)
        return {**{name: encode(getattr(self, name)) for name in stored_fields(cls)},
                **{name: getattr(self, name) for name in self.DERIVED}}

    @classmethod
    def from_dict(cls, data, n_layers: int | None = None, where: str = ""):
        """Read a record back from data written by `to_dict`, checked against the class's field types.

        Args:
            data (dict): the data.
            n_layers: the model's depth, to check layers and per-layer lists against; None checks no depth.
            where: how error messages name `data` (e.g. a file and a key).

        Returns:
            (Record): the record, an instance of the class it is called on.

        Raises:
            ResultsError: a missing or unexpected field, a value of the wrong type or range, or values that
                contradict each other (the message names where).
        """
        return decode(cls, data, where, n_layers)


def encode(value):
    """`value` as JSON-ready data: records as dicts, tuples as lists."""
    if isinstance(value, Record):
        return value.to_dict()
    if isinstance(value, (list, tuple)):
        return [encode(v) for v in value]
    if isinstance(value, dict):
        return {key: encode(v) for key, v in value.items()}
    return value


@cache
def stored_fields(cls: type) -> dict[str, Any]:
    """Name -> type of the fields of dataclass `cls` written to disk, in order."""
    hints = get_type_hints(cls, include_extras=True)
    return {f.name: hints[f.name] for f in fields(cls) if f.metadata.get("stored", True)}


def _at(where: str) -> str:
    return where or "top level"


def _path(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def decode(type_, value, where: str, n_layers: int | None):
    """`value` read as `type_` (a Record dataclass, list/tuple/dict/optional of types, or a plain
    type, possibly `Layer` / `PerLayer` / `Fraction`), or a one-line ResultsError."""
    marks: Sequence[object] = ()
    if get_origin(type_) is Annotated:
        type_, *marks = get_args(type_)
    origin, args = get_origin(type_), get_args(type_)
    if PER_LAYER in marks and n_layers is not None and isinstance(value, list) and len(value) != n_layers:
        raise ResultsError(f"{where}: expected one entry per layer ({n_layers}), got {len(value)}")
    if isinstance(type_, type) and is_dataclass(type_):
        return _record(type_, value, where, n_layers)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return decode(inner, value, where, n_layers)
    if origin is list or type_ is list:
        items = _list(value, where)
        return [decode(args[0], v, f"{where}[{i}]", n_layers) for i, v in enumerate(items)] if args else items
    if origin is tuple:
        items = _list(value, where)
        if args[-1] is Ellipsis:
            return tuple(decode(args[0], v, f"{where}[{i}]", n_layers) for i, v in enumerate(items))
        if len(items) != len(args):
            raise ResultsError(f"{where}: expected {len(args)} entries, got {len(items)}")
        return tuple(decode(a, v, f"{where}[{i}]", n_layers) for i, (a, v) in enumerate(zip(args, items)))
    if origin is dict or type_ is dict:
        if not isinstance(value, dict):
            raise ResultsError(f"{_at(where)}: expected an object, got {type(value).__name__}")
        return {k: decode(args[1], v, f"{where}.{k}", n_layers) for k, v in value.items()} if args else value
    if type_ is float:
        return _number(value, where, FRACTION in marks)
    if type_ is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ResultsError(f"{where}: expected an integer, got {type(value).__name__}")
        if LAYER in marks and n_layers is not None and not 0 <= value < n_layers:
            raise ResultsError(f"{where}: layer {value} out of range: the model has layers 0..{n_layers - 1}")
        return value
    if not isinstance(value, type_):
        raise ResultsError(f"{_at(where)}: expected {type_.__name__}, got {type(value).__name__}")
    return value


def _list(value, where: str) -> list:
    if not isinstance(value, list):
        raise ResultsError(f"{_at(where)}: expected a list, got {type(value).__name__}")
    return value


def _record(cls: type, value, where: str, n_layers: int | None):
    """An instance of dataclass `cls` from a JSON object holding its stored fields and derived values."""
    if not isinstance(value, dict):
        raise ResultsError(f"{_at(where)}: expected an object, got {type(value).__name__}")
    derived = getattr(cls, "DERIVED", {})
    expected = stored_fields(cls) | derived
    checked = {}
    for name, type_ in expected.items():
        if name not in value:
            raise ResultsError(f"{_at(where)}: missing field {name!r}")
        checked[name] = decode(type_, value[name], _path(where, name), n_layers)
    unexpected = [key for key in value if key not in expected]
    if unexpected:
        raise ResultsError(f"{_at(where)}: unexpected field {unexpected[0]!r}")
    try:
        return cls(**{name: checked[name] for name in expected if name not in derived})
    except ValueError as err:
        raise ResultsError(f"{_at(where)}: {err}") from None


def _number(value, where: str, fraction: bool) -> float:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return math.nan
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ResultsError(f"{where}: expected a number, got {type(value).__name__}")
    if fraction and not 0 <= value <= 1:
        raise ResultsError(f"{where}: expected a fraction in [0, 1], got {value}")
    return value
