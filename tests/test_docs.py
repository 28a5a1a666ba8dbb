"""The user documentation (README.md and docs/) stays true: its code runs, its commands parse, its generated
pages cover the code, and its results are the numbers `tv-lens figures` wrote.

Code blocks. Every ```python block of a page runs, in order, in one namespace per page, in a temporary
folder (a block may write files that a later one reads). A ```text block that follows a python block
(before any other fenced block) is what that block prints.
- On the embedded model (slow): as written, and each shown output must be printed exactly.
- Fast: the same code on a random stand-in for each embedded model, the same architecture family with its
  real tokenizer and depth but tiny widths (so task filters, layers and prompts behave as on the real model);
  it must run, and its printed answers are not checked. The stand-in takes the place of what
  `tv.load_model()` returns for an embedded name (placement arguments are ignored); other specs load as usual.

Write docs blocks for the embedded models (`tv.load_model()`), or for a tiny test model (`"tiny-llama"`).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import re
import shlex
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```[ \t]*$", re.S | re.M)
STAND_INS = {"gemma-3-270m": ("tiny-gemma", 18), "smollm2-135m": ("tiny-llama", 30)}
TASKS = ("next_letter prev_letter list_first list_last to_upper to_lower fr_en es_en en_fr en_es present_gerund "
         "present_past plural_singular antonyms country_capital person_language location_continent "
         "person_religion").split()


def page_id(page: Path) -> str:
    return page.relative_to(ROOT).as_posix()


def fenced(page: Path) -> list[tuple[str, str]]:
    """(language, code) of every fenced block of a page, in order."""
    return [(m.group(1), m.group(2)) for m in FENCE.finditer(page.read_text(encoding="utf-8"))]


def examples(page: Path) -> list[tuple[str, str | None]]:
    """Each python block of a page with what it shows as printed (the text block right after it), or None."""
    blocks = fenced(page)
    found = []
    for i, (language, code) in enumerate(blocks):
        if language == "python":
            shown = blocks[i + 1][1] if i + 1 < len(blocks) and blocks[i + 1][0] == "text" else None
            found.append((code, shown))
    return found


def load_hook():
    spec = importlib.util.spec_from_file_location("docs_reference_hook", ROOT / "docs" / "hooks" / "reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


CODE_PAGES = [page for page in PAGES if examples(page)]


def run_page(page: Path, tmp_path: Path, monkeypatch) -> list[tuple[str, str | None, str]]:
    """Run a page's python blocks in order; (code, shown output, printed output) of each."""
    import torch

    from tv_lens.tasks import list_tasks, unregister_task
    from tv_lens.threads import set_threads

    monkeypatch.chdir(tmp_path)
    registered, threads = set(list_tasks()), torch.get_num_threads()
    namespace: dict = {"__name__": "__docs__"}
    ran = []
    try:
        for i, (code, shown) in enumerate(examples(page)):
            out = io.StringIO()
            with contextlib.redirect_stdout(out):
                exec(compile(code, f"{page_id(page)} block {i + 1}", "exec"), namespace)
            ran.append((code, shown, out.getvalue()))
    finally:  # a page's registered tasks and thread setting do not leak into the next tests
        for name in set(list_tasks()) - registered:
            unregister_task(name)
        set_threads(threads)
    return ran


@pytest.fixture(scope="module")
def stand_ins():
    """spec -> a random model of that embedded model's family, tokenizer and depth (built once per spec)."""
    built = {}

    def stand_in(spec: str):
        if spec not in built:
            from tv_lens.models.loading import load_tokenizer
            from tv_lens.models.provenance import remember
            from tv_lens.models.tiny import tiny_model

            kind, n_layers = STAND_INS[spec]
            built[spec] = tiny_model(kind, n_layers=n_layers, tokenizer=load_tokenizer(spec))
            remember(built[spec], spec)  # vectors it makes name the spec, so from_file finds the stand-in again
        return built[spec]

    return stand_in


@pytest.mark.parametrize("page", CODE_PAGES, ids=page_id)
def test_page_code_runs_on_stand_in_models(page, tmp_path, monkeypatch, stand_ins):
    import tv_lens.models.loading as loading

    real = loading.load_model

    def load_model(spec: str = "gemma-3-270m", *args, dtype=None, **placement):
        if spec in STAND_INS:
            return stand_ins(spec)
        return real(spec, *args, **placement, **({} if dtype is None else {"dtype": dtype}))

    monkeypatch.setattr(loading, "load_model", load_model)
    assert run_page(page, tmp_path, monkeypatch)


EMBEDDED: dict = {}  # spec -> the embedded model, loaded once for every page


@pytest.mark.slow
@pytest.mark.parametrize("page", CODE_PAGES, ids=page_id)
def test_page_code_prints_what_the_page_shows_on_the_embedded_model(page, tmp_path, monkeypatch):
    import tv_lens.models.loading as loading

    real = loading.load_model

    def load_model(spec: str = "gemma-3-270m", *args, **placement):
        if args or placement or spec not in STAND_INS:
            return real(spec, *args, **placement)
        if spec not in EMBEDDED:
            EMBEDDED[spec] = real(spec)
        return EMBEDDED[spec]

    monkeypatch.setattr(loading, "load_model", load_model)
    for code, shown, printed in run_page(page, tmp_path, monkeypatch):
        if shown is not None:
            assert printed == shown, f"{page_id(page)}: the block\n{code}\nprinted\n{printed}"


def test_every_shown_output_belongs_to_a_block_that_prints():
    for page in CODE_PAGES:
        for code, shown in examples(page):
            assert shown is None or "print(" in code, f"{page_id(page)}: output shown under a block that prints nothing"


def commands(page: Path) -> list[str]:
    """Every `tv-lens ...` command line of a page's bash blocks (continuations joined, up to `;`, `&`, `|`, `<`)."""
    lines = []
    for language, code in fenced(page):
        if language not in ("bash", "sh", "console"):
            continue
        for line in code.replace("\\\n", " ").splitlines():
            start = line.find("tv-lens ")
            if start < 0 or line.lstrip().startswith("#"):
                continue
            command = line[start:]
            if start and line[start - 1] in "'\"":  # quoted, as in sbatch --wrap '...'
                command = command[:command.find(line[start - 1])]
            lexer = shlex.shlex(command, posix=True, punctuation_chars=True)
            lexer.whitespace_split = True
            lexer.commenters = "#"
            words = []
            for word in lexer:
                if word in (";", "&", "&&", "|", "||", "<", ">", ")"):
                    break
                words.append(word)
            lines.append(words)
    return lines


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_every_tv_lens_command_in_the_docs_parses(page):
    from tv_lens.cli.main import build_parser

    parser = build_parser()
    for words in commands(page):
        try:
            parser.parse_args(words[1:])
        except SystemExit:
            pytest.fail(f"{page_id(page)}: `{shlex.join(words)}` does not parse (see the error above)")


def test_the_cli_reference_shows_every_command_and_option():
    from tv_lens.cli.main import build_parser

    parser = build_parser()
    page = load_hook().render_cli(parser)
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, command in sub.choices.items():
        assert f"## `{name}`" in page
        for action in command._actions:
            for option in [] if isinstance(action, argparse._HelpAction) else action.option_strings:
                assert f"`{option}" in page, (name, option)


def test_the_api_reference_places_every_public_name():
    import tv_lens

    pages = load_hook().api_pages()
    text = "\n".join(pages.values())
    for name in tv_lens.__all__:
        obj = getattr(tv_lens, name)
        assert name == "__version__" or f".{name}\n" in text or f"::: {getattr(obj, '__name__', '')}\n" in text, name


def test_the_readme_is_a_front_door():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme.encode()) <= 15 * 1024


def test_the_readme_cites_the_papers_as_citation_bib_does():
    bibtex = next(code for language, code in fenced(ROOT / "README.md") if language == "bibtex")
    entries = (ROOT / "CITATION.bib").read_text(encoding="utf-8").split("\n\n")
    papers = [entry.strip() for entry in entries if entry.startswith("@inproceedings")]
    assert len(papers) == 2 and bibtex.strip() == "\n\n".join(papers)


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_links_into_the_checkout_hold_on_github_too(page):
    """Relative links to files (the site checks its own links; GitHub shows the pages from the checkout)."""
    for link in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", page.read_text(encoding="utf-8")):
        if not link.startswith("api/") and not link.startswith("reference/") and "/api/" not in link \
                and "/reference/" not in link:
            assert (page.parent / link).exists(), f"{page_id(page)}: {link}"


LAB_NOTES = re.compile(r"load average|\btoday\b|earlier session|first session|issue \d|PAPER\.md|FV\.md|quiet machine"
                       r"|busy machine|2-core machine", re.I)


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_user_docs_hold_no_lab_notes(page):
    found = LAB_NOTES.findall(page.read_text(encoding="utf-8"))
    assert not found, f"{page_id(page)}: {found}"


def table_rows(text: str) -> list[list[str]]:
    return [[cell.strip() for cell in line.strip().strip("|").split("|")]
            for line in text.splitlines() if line.startswith("|") and not line.startswith("|---")]


def numbers(cells: list[str]) -> list[str]:
    """The numbers of a table row, intervals `[a, b]` left out."""
    return re.findall(r"[+-]?\d+\.\d+|\b\d+\b", re.sub(r"\[[^]]*\]", "", " ".join(cells)))


RESULTS = [page for page in sorted((ROOT / "docs" / "results").glob("*.md")) if "tables.md" in page.read_text()]


@pytest.mark.parametrize("page", RESULTS, ids=page_id)
def test_results_tables_hold_the_numbers_tv_lens_figures_wrote(page):
    """A task's row on a results page has the numbers of a row of that task in the model's figures/*/tables.md
    (the figures folder is the last one a heading of the page names, the longest name where several match:
    gemma-3-270m-fv before gemma-3-270m)."""
    models = {path.parent.name: table_rows(path.read_text(encoding="utf-8"))
              for path in (ROOT / "figures").glob("*/tables.md")}
    model, checked = None, 0
    for line in page.read_text(encoding="utf-8").splitlines():
        if line.startswith("#"):
            model = max((name for name in models if name in line), key=len, default=model)
        row = table_rows(line)
        if model is None or not row or row[0][0] not in TASKS or model not in models:
            continue
        assert any(r[0] == row[0][0] and numbers(r[1:]) == numbers(row[0][1:]) for r in models[model]), \
            f"{page_id(page)} ({model}): {line}"
        checked += 1
    assert checked
