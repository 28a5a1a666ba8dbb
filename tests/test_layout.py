"""The package's shape: layers in subpackages, no import circle, the library never imports its experiments, one
public surface, one error base."""

import ast
import importlib
import inspect
import pkgutil
from pathlib import Path

import pytest

import tv_lens

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "tv_lens"
# the layers, from the bottom up: a module may import its own layer's or lower layers' modules only
LAYERS = [
    {"errors", "settings", "threads", "progress", "files", "claims", "codec", "stats"},
    {"models", "patching", "tasks"},
    {"task_vectors", "function_vectors", "analysis"},
    {"runs", "report"},
    {"cli"},
]


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """Every tv_lens module this file imports, at the top or inside a function (TYPE_CHECKING blocks too)."""
    found = set()
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            found.add(base)
            found |= {f"{base}.{alias.name}" for alias in node.names}
    return found


def library_graph() -> dict[str, set[str]]:
    """tv_lens module -> the tv_lens modules (files, not packages' faces) it imports."""
    files = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {name: {m for m in imports_of(path) if m in files and m != name and not files[m].name == "__init__.py"}
            for name, path in files.items() if path.name != "__init__.py"}


def test_no_import_circle_in_the_library():
    graph = library_graph()
    done: set[str] = set()

    def visit(node: str, stack: list[str]) -> None:
        if node in stack:
            pytest.fail("import circle: " + " -> ".join(stack[stack.index(node):] + [node]))
        if node in done:
            return
        for other in sorted(graph[node]):
            visit(other, stack + [node])
        done.add(node)

    for node in sorted(graph):
        visit(node, [])


def layer_of(module: str) -> int:
    part = module.split(".")[1]
    return next(i for i, layer in enumerate(LAYERS) if part in layer)


def test_imports_point_down_the_layers():
    upward = [(a, b) for a, targets in library_graph().items() for b in targets if layer_of(b) > layer_of(a)]
    assert upward == []


def test_the_library_never_imports_its_experiments():
    for path in PACKAGE.rglob("*.py"):
        experiments = {m for m in imports_of(path) if m.split(".")[0] in ("analyses", "figures", "tv_lens_analyses",
                                                                         "tv_lens_figures")}
        assert not experiments, (path, experiments)


def test_at_most_a_dozen_modules_at_the_top_and_every_folder_a_layer():
    top = sorted(p.stem for p in PACKAGE.glob("*.py") if p.name != "__init__.py")
    assert len(top) <= 12, top
    folders = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert set(top) | folders == set().union(*LAYERS)


def test_no_module_is_named_after_its_own_function():
    """`tv_lens.x.learn` the module and `learn` the function would shadow each other as package attributes (the
    command line's `main` in `cli/main.py` is the convention of `python -m`)."""
    named_after = [path for path in PACKAGE.rglob("*.py") if path.stem != "main"
                   if any(isinstance(node, ast.FunctionDef) and node.name == path.stem
                          for node in ast.parse(path.read_text()).body)]
    assert named_after == []


def test_every_public_name_resolves_and_is_documented():
    for name in tv_lens.__all__:
        value = getattr(tv_lens, name)
        if name != "__version__":
            assert inspect.getdoc(value), name
    assert tv_lens.__version__ and tv_lens.__version__ != "0+unknown"


def test_every_error_class_of_the_library_is_a_tv_lens_error():
    errors = []
    for info in pkgutil.walk_packages(tv_lens.__path__, "tv_lens."):
        if info.name.startswith("tv_lens.cli"):
            continue
        module = importlib.import_module(info.name)
        errors += [obj for obj in vars(module).values()
                   if inspect.isclass(obj) and issubclass(obj, Exception) and not issubclass(obj, Warning)
                   and obj.__module__ == info.name]
    assert errors and all(issubclass(e, tv_lens.TvLensError) for e in errors), errors


# The bare builtin errors the library may raise, each with why it is not a TvLensError: (module, function) -> reason.
BARE_RAISES_ALLOWED = {
    ("tv_lens/runs/store.py", "_reject_constant"): "json's parse_constant hook: raises what json raises, and the "
                                                    "callers turn it into a ResultsError or a skipped record",
    ("tv_lens/models/cache.py", "read_manifest"): "raised beside json's own ValueError; check_directory turns both "
                                                  "into the reason a cache entry is rebuilt",
    ("tv_lens/models/gguf.py", "read_gguf"): "the GGUF parser: the loader wraps every error of the parse (struct, "
                                             "gguf, this) in a ModelLoadError",
    ("tv_lens/task_vectors/vector.py", "_read_safetensors"): "raised inside the try that turns it, like "
                                                             "safetensors' own errors, into a VectorFileError",
}
BARE = {"ValueError", "TypeError", "KeyError"}


def bare_raises() -> list[tuple[str, str, int, str]]:
    """Every `raise ValueError/TypeError/KeyError` (the builtins, called or not) in the library, with its
    module, enclosing function, line and error."""
    found = []

    def visit(node: ast.AST, path: str, function: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Raise) and child.exc is not None:
                error = child.exc.func if isinstance(child.exc, ast.Call) else child.exc
                if isinstance(error, ast.Name) and error.id in BARE:
                    found.append((path, function, child.lineno, error.id))
            inner = child.name if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)) else function
            visit(child, path, inner)

    for path in sorted(PACKAGE.rglob("*.py")):
        visit(ast.parse(path.read_text()), path.relative_to(ROOT).as_posix(), "")
    return found


def test_the_library_raises_no_bare_value_type_or_key_error_on_bad_input():
    """Bad input gets a TvLensError (`TvLensTypeError`, `UnknownQueryError` for the former TypeErrors and
    KeyErrors), so `except tv.TvLensError` catches every one; the few bare ones are internal and listed."""
    found = bare_raises()
    unlisted = [f"{path}:{line} ({function}) raises a bare {error}: raise a TvLensError (tv_lens.errors)"
                for path, function, line, error in found if (path, function) not in BARE_RAISES_ALLOWED]
    assert unlisted == []
    # every allowed one is still there (the scan is not blind, and the list holds no stale entry)
    assert set(BARE_RAISES_ALLOWED) <= {(path, function) for path, function, *_ in found}
