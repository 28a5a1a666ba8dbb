"""Honest dependencies: every third-party module that tv_lens/, analyses/ and figures/ import is declared in
pyproject.toml with a lower bound, every declared dependency is used, and the installed versions satisfy them."""

import ast
import re
import sys
from importlib.metadata import packages_distributions, version
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
SHIPPED = ("tv_lens", "analyses", "figures")
OWN = {"tv_lens", "analyses", "figures", "tv_lens_analyses", "tv_lens_figures"}
# declared, though no module imports them by name: what uses them instead
USED_INDIRECTLY = {
    "accelerate": "transformers places models with it under load_model(device_map=...)",
    "kaleido": "plotly renders the PNG figures with it (the png extra)",
    "ipywidgets": "tqdm.auto draws progress bars as widgets with it in Jupyter (the notebook extra)",
}


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _name(requirement: str) -> str:
    from packaging.requirements import Requirement

    return _normal(Requirement(requirement).name)


@pytest.fixture(scope="module")
def declared() -> dict[str, list[str]]:
    """Extra (or "" for the required ones) -> its requirements."""
    tomllib = pytest.importorskip("tomllib")
    pytest.importorskip("packaging")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return {"": project["dependencies"], **project["optional-dependencies"]}


def imported_distributions() -> dict[str, set[str]]:
    """Distribution -> the shipped files that import a module of it (absolute imports, stdlib and own left out)."""
    owners = packages_distributions()
    found: dict[str, set[str]] = {}
    for folder in SHIPPED:
        for path in (ROOT / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Import):
                    modules = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0:
                    modules = [node.module]
                else:
                    continue
                for module in modules:
                    top = module.split(".")[0]
                    if top in sys.stdlib_module_names or top in OWN:
                        continue
                    where = path.relative_to(ROOT).as_posix()
                    assert top in owners, f"{where} imports {top!r}, which no installed package provides"
                    for distribution in owners[top]:
                        found.setdefault(_normal(distribution), set()).add(where)
    return found


def test_every_import_of_the_shipped_code_is_a_required_dependency(declared):
    required = {_name(r) for r in declared[""]}
    missing = {d: sorted(files)[:3] for d, files in imported_distributions().items() if d not in required}
    assert missing == {}, "declare these in pyproject.toml's dependencies (with a lower bound)"


def test_every_dependency_has_a_lower_bound_and_is_used(declared):
    from packaging.requirements import Requirement

    used = set(imported_distributions()) | set(USED_INDIRECTLY)
    for extra, requirements in declared.items():
        if extra in ("test", "docs"):  # tooling: the tests and the documentation site (mkdocs.yml), not shipped
            continue
        for text in requirements:
            requirement = Requirement(text)
            assert any(s.operator in (">=", "==", "~=") for s in requirement.specifier), f"{text}: give a lower bound"
            assert _name(text) in used, f"{text} is declared but nothing imports or uses it: drop it"


def test_the_installed_versions_satisfy_the_declared_ones(declared):
    from packaging.requirements import Requirement

    for text in declared[""]:
        requirement = Requirement(text)
        assert requirement.specifier.contains(version(requirement.name), prereleases=True), \
            f"installed {requirement.name} {version(requirement.name)} does not satisfy {text}"
