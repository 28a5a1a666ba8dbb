"""The API reference documents every parameter of the public surface, in one Google style.

The reference (docs/api/, rendered by mkdocstrings with `docstring_style: google`) shows each docstring's
`Args:` and `Attributes:` as tables. The public surface is every name of `tv_lens.__all__`, the public
functions and classes of its modules (`tv.hooks`, `tv.plots`), and the public methods and properties of each
such class and of its tv_lens base classes. For each callable, every parameter (but self, cls, *args and
**kwargs) is named under `Args:` (a class's constructor parameters under its `Args:` or `Attributes:`, or
those of a tv_lens base class), and no entry names a parameter or attribute that does not exist. Docstrings
are parsed by griffe as the site parses them, and a griffe warning on one (a malformed section, an entry
that the signature lacks) fails the test as it fails `mkdocs build --strict`.
"""

from __future__ import annotations

import dataclasses
import inspect
import logging
import re
from functools import cache
from pathlib import Path

import griffe
import pytest

import tv_lens

ROOT = Path(__file__).parents[1]
VARIADIC = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)


def public_surface() -> dict[str, object]:
    """Dotted path -> object of every public callable, class and property, as the module defining it names it."""
    found: dict[str, object] = {}
    for name in tv_lens.__all__:
        if name == "__version__":
            continue
        obj = getattr(tv_lens, name)
        if inspect.ismodule(obj):
            for member_name, member in vars(obj).items():
                if (not member_name.startswith("_") and getattr(member, "__module__", None) == obj.__name__
                        and (inspect.isfunction(member) or inspect.isclass(member))):
                    found[f"{obj.__name__}.{member_name}"] = member
        else:
            found[f"{obj.__module__}.{obj.__qualname__}"] = obj
    for klass in [obj for obj in found.values() if inspect.isclass(obj)]:
        for base in klass.__mro__:
            if not base.__module__.startswith("tv_lens."):
                continue
            for member_name, member in vars(base).items():
                public = member_name == "__call__" or not member_name.startswith("_")
                if public and (inspect.isfunction(member) or isinstance(member, (property, classmethod, staticmethod))):
                    found.setdefault(f"{base.__module__}.{base.__qualname__}.{member_name}", member)
    return found


SURFACE = public_surface()


@cache
def package() -> griffe.Object:
    return griffe.load("tv_lens", docstring_parser="google", search_paths=[str(ROOT)])


def sections(path: str) -> tuple[dict[str, list[str]], list[str]]:
    """Section kind -> entry names of the docstring at `path`, and griffe's warnings on parsing it."""
    obj = package()[path.removeprefix("tv_lens.")]
    assert obj.docstring is not None, f"{path} has no docstring"
    warnings: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            warnings.append(record.getMessage())

    handler, logger = Collect(level=logging.WARNING), logging.getLogger("griffe")
    logger.addHandler(handler)
    try:
        parsed = griffe.Docstring(obj.docstring.value, lineno=obj.docstring.lineno, parser="google",
                                  parent=obj).parse()
    finally:
        logger.removeHandler(handler)
    found: dict[str, list[str]] = {}
    for section in parsed:
        if section.kind.value in ("parameters", "attributes"):
            found.setdefault(section.kind.value, []).extend(entry.name.lstrip("*") for entry in section.value)
    return found, warnings


def signature(obj: object) -> list[inspect.Parameter]:
    """The parameters of a callable or a class's constructor; none for a class without a Python signature."""
    function = obj.__func__ if isinstance(obj, (classmethod, staticmethod)) else obj
    try:
        return list(inspect.signature(function).parameters.values())
    except ValueError:  # an exception class: ValueError's constructor has no signature
        return []


def parameters(obj: object) -> list[str]:
    """The parameters to document of a callable or a class's constructor (not self/cls, *args or **kwargs)."""
    names = [p.name for p in signature(obj) if p.kind not in VARIADIC]
    bound = inspect.isfunction(obj) and names[:1] == ["self"] or isinstance(obj, classmethod)
    return names[1:] if bound else names


def attributes(klass: type) -> set[str]:
    """What an `Attributes:` entry of `klass` may name: fields, class members, and `self.x` set in `__init__`."""
    names = {f.name for f in dataclasses.fields(klass)} if dataclasses.is_dataclass(klass) else set()
    names |= set(dir(klass))
    if not dataclasses.is_dataclass(klass) and "__init__" in vars(klass):
        names |= set(re.findall(r"self\.(\w+)\s*=", inspect.getsource(klass.__init__)))
    return names


def documented_in_bases(klass: type) -> set[str]:
    """Names under `Args:` or `Attributes:` of the tv_lens base classes of `klass`."""
    names: set[str] = set()
    for base in klass.__mro__[1:]:
        if base.__module__.startswith("tv_lens.") and dataclasses.is_dataclass(base):
            found, _ = sections(f"{base.__module__}.{base.__qualname__}")
            names |= {*found.get("parameters", []), *found.get("attributes", [])}
    return names


def test_the_surface_is_the_whole_public_api():
    """The walk finds the names the brief of the reference names, so the checks below cover them."""
    for path in ["tv_lens.task_vectors.applying.apply", "tv_lens.task_vectors.vector.TaskVector.intervention",
                 "tv_lens.task_vectors.vector.TaskVector.load", "tv_lens.patching.hooks.adding",
                 "tv_lens.report.plots.layer_sweep", "tv_lens.task_vectors.serving.TaskVectorSolver.__call__",
                 "tv_lens.stats.Accuracy.value", "tv_lens.codec.Record.from_dict"]:
        assert path in SURFACE, path
    assert len(SURFACE) > 100


def problems(obj: object, found: dict[str, list[str]]) -> list[str]:
    """What is wrong with the `Args:` and `Attributes:` entries (`found`) of the docstring of `obj`."""
    if isinstance(obj, property):
        return []
    args, attrs = found.get("parameters", []), found.get("attributes", [])
    wrong = [f"a parameter is documented twice under Args: {args}"] if len(args) != len(set(args)) else []
    if inspect.isclass(obj):
        unknown = sorted(set(attrs) - attributes(obj))
        wrong += [f"Attributes names what the class lacks: {unknown}"] if unknown else []
        documented = {*args, *attrs, *documented_in_bases(obj)}
    else:
        wrong += ["a function's docstring has an Attributes section"] if attrs else []
        documented = set(args)
    missing = [name for name in parameters(obj) if name not in documented]
    wrong += [f"parameters not documented under Args: {missing}"] if missing else []
    stale = sorted(set(args) - {p.name for p in signature(obj)})
    wrong += [f"Args names parameters it does not take: {stale}"] if stale else []
    return wrong


@pytest.mark.parametrize("path", sorted(SURFACE))
def test_every_parameter_is_documented_under_args_and_every_entry_exists(path):
    found, warnings = sections(path)
    assert not warnings, f"{path}: griffe warns on its docstring: {warnings}"
    assert not problems(SURFACE[path], found), f"{path}: {'; '.join(problems(SURFACE[path], found))}"


def test_the_check_finds_an_undocumented_and_a_stale_parameter():
    """The rule itself: a parameter missing from Args, and an Args entry without a parameter, are both found."""
    def summed(a: int, b: int, *rest: int, **options: int) -> int:
        """Sum.

        Args:
            a: the first.
            c: gone.
        """
        return a + b

    parsed = griffe.Docstring(inspect.getdoc(summed) or "", parser="google").parse()
    found = {s.kind.value: [e.name for e in s.value] for s in parsed if s.kind.value == "parameters"}
    assert problems(summed, found) == ["parameters not documented under Args: ['b']",
                                       "Args names parameters it does not take: ['c']"]
