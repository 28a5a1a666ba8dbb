"""MkDocs hook: the pages made from the code, so that they cannot fall behind it.

- `reference/cli.md`, the `tv-lens` reference, rendered from the program's argparse parser (every
  command, argument, default and choice);
- `api/*.md`, one page per group of public names (`tv_lens.__all__`), each name rendered from its
  docstring by mkdocstrings; a public name missing from `API_GROUPS` stops the build;
- the figures under `figures/<model>/` that the pages show, served from the repository: a page links them
  by their path in the checkout (`../../figures/...` from `docs/results/`, so that they show on GitHub too),
  and the site by the same path inside the site.

Nothing generated is written into the checkout: the pages exist only in the built site.
"""

from __future__ import annotations

import argparse
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# the public surface (tv_lens.__all__) in reading order: page file, title, intro, names
API_GROUPS: list[tuple[str, str, str, list[str]]] = [
    ("models", "Models", "Load a model as a TransformerLens `TransformerBridge` in compatibility mode, its tokenizer, "
     "and the fingerprint of its weights.", ["load_model", "load_tokenizer", "fingerprint"]),
    ("tasks", "Tasks and prompts", "The 18 built-in tasks, your own tasks, the item sets of the protocol, and the "
     "prompt format.", ["Task", "get_task", "list_tasks", "load_task", "register_task", "sample_splits",
                        "PromptFormat"]),
    ("task-vectors", "Task vectors", "Learn θ from demonstrations, apply it to bare queries, generate whole "
     "answers, and serve a saved vector.", ["learn", "learn_task", "apply", "generate", "score_generation",
                                            "TaskVector", "TaskVectorSolver", "layer_sweep"]),
    ("evaluation", "Evaluation", "The paper's main experiment on one task, its sizes, and accuracies with their "
     "intervals.", ["evaluate", "EvalResult", "Settings", "Accuracy"]),
    ("function-vectors", "Function vectors", "The indirect effect of every attention head and the function vector "
     "of Todd et al. (2024): per task, and the universal head set over tasks.",
     ["head_effects", "HeadEffects", "universal_heads", "UniversalHeads", "function_vector", "FunctionVector"]),
    ("patching", "Patching and hooks", "Where a vector is written into a forward pass, and generic hooks for any "
     "TransformerLens model.", ["Intervention", "intervening", "hooks"]),
    ("analysis", "Analysis and figures", "What θ promotes through the unembedding, and plotly figures of the "
     "experiments.", ["top_tokens", "plots"]),
    ("runtime", "Threads, errors and version", "", ["set_threads", "TvLensError", "__version__"]),
]


def api_pages() -> dict[str, str]:
    """`api/<group>.md` -> Markdown, with a mkdocstrings directive per public name."""
    import importlib
    import inspect

    import tv_lens

    listed = [name for *_, names in API_GROUPS for name in names]
    unlisted = sorted(set(tv_lens.__all__) - set(listed))
    unknown = sorted(set(listed) - set(tv_lens.__all__))
    if unlisted or unknown:
        raise ValueError(f"docs/hooks/reference.py API_GROUPS: place the public names {unlisted} on a page"
                         f"{f' and remove {unknown}, which are not in tv_lens.__all__' if unknown else ''}")
    pages = {}
    for slug, title, intro, names in API_GROUPS:
        parts = [f"# {title}\n", "Every name here is an attribute of the package: `import tv_lens as tv`, then "
                 f"`tv.{names[0]}`.\n"]
        if intro:
            parts.insert(1, f"{intro}\n")
        for name in names:
            if name == "__version__":
                parts.append(f"## `tv.__version__`\n\nThe installed version of tv-lens (`{tv_lens.__version__}` "
                             "when these pages were built); `0+unknown` in a checkout that was not installed.\n")
                continue
            obj = getattr(tv_lens, name)
            path = obj.__name__ if inspect.ismodule(obj) else f"{obj.__module__}.{obj.__qualname__}"
            importlib.import_module(path.rpartition(".")[0])
            parts.append(f"::: {path}\n")
        pages[f"api/{slug}.md"] = "\n".join(parts)
    return pages


def _default(action: argparse.Action) -> str:
    if action.required:
        return "required" if action.option_strings else ""
    if action.default in (None, argparse.SUPPRESS) or action.default is False:
        return ""
    if isinstance(action.default, list):
        return " ".join(map(str, action.default))
    return str(action.default)


def _name(action: argparse.Action) -> str:
    if not action.option_strings:
        return f"`{action.metavar or action.dest.upper()}`"
    value = ""
    if action.nargs != 0:
        value = " " + (action.metavar or action.dest.upper())
        if action.nargs in ("+", "*"):
            value += " ..."
    return ", ".join(f"`{option}{value}`" for option in action.option_strings)


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def render_cli(parser: argparse.ArgumentParser) -> str:
    """The Markdown reference of a program's subcommands: what each does, its usage and every argument."""
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    helps = {choice.dest: choice.help for choice in commands._choices_actions}
    lines = [f"# `{parser.prog}` reference", "",
             "Generated from the program's own argument parser when these pages are built; "
             f"`{parser.prog} COMMAND --help` prints the same.", "",
             "| command | what it does |", "|---|---|"]
    lines += [f"| [`{name}`](#{name}) | {_cell(helps.get(name) or '')} |" for name in commands.choices]
    for name, sub in commands.choices.items():
        usage = " ".join(sub.format_usage().split()).removeprefix("usage: ")
        lines += ["", f"## `{name}` {{ #{name} }}", "", _cell(sub.description or helps.get(name) or ""), "",
                  "```text", usage, "```"]
        for group in sub._action_groups:
            actions = [a for a in group._group_actions if not isinstance(a, argparse._HelpAction)]
            if not actions:
                continue
            lines += ["", f"**{group.title}**", "", "| argument | default | choices | description |",
                      "|---|---|---|---|"]
            for action in actions:
                choices = ", ".join(map(str, action.choices)) if action.choices else ""
                default = _default(action)
                shown = default if default in ("", "required") else f"`{default}`"
                lines.append(f"| {_name(action)} | {shown} | {choices} | "
                             f"{_cell(action.help or '')} |")
    return "\n".join(lines) + "\n"


def cli_page() -> str:
    from tv_lens.cli.main import build_parser

    return render_cli(build_parser())


def on_page_markdown(markdown, page, config, files):
    """Links to the checkout's figures (out of docs/) become links to the site's copy of them."""
    depth = page.file.src_uri.count("/")
    return markdown.replace("](" + "../" * (depth + 1) + "figures/", "](" + "../" * depth + "figures/")


def on_files(files, config):
    """Add the generated pages and the figures to the site's files."""
    from mkdocs.structure.files import File

    pages = {"reference/cli.md": cli_page(), **api_pages()}
    for uri, content in pages.items():
        files.append(File.generated(config, uri, content=content))
    for png in sorted((ROOT / "figures").glob("*/*.png")):
        files.append(File.generated(config, png.relative_to(ROOT).as_posix(), abs_src_path=str(png)))
    return files
