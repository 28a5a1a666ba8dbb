"""`tv-lens learn` and `tv-lens apply`: make a task-vector file, and answer queries with one (and what
`tv-lens generate` shares with `apply`: loading a vector with its model, reading and answering queries)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from tv_lens.cli.options import add_model_options, at_least, finite_float, placement
from tv_lens.errors import TvLensError
from tv_lens.settings import PAPER


def add_commands(commands) -> None:
    """Register `learn` and `apply` on the `tv-lens` subparsers."""
    learn = commands.add_parser("learn", help="learn a task-level vector and save it",
                                description="Learn a task-level θ (mean over K contexts), choose its layer "
                                            "by a dev sweep unless --layer, and save it as safetensors.")
    learn.add_argument("--task", required=True, help="a task name (e.g. antonyms) or a task file "
                                                     "(.json, .jsonl, .csv)")
    learn.add_argument("--out", required=True, help="where to write the vector (.safetensors)")
    learn.add_argument("--k", type=at_least(1), default=16, help="contexts averaged (default: 16)")
    learn.add_argument("--layer", type=at_least(0), default=None, help="layer to use (default: best on a dev sweep)")
    learn.add_argument("--n-shots", type=at_least(1), default=PAPER.n_shots,
                       help=f"demonstrations per context (default: {PAPER.n_shots})")
    learn.add_argument("--n-dev", type=at_least(1), default=PAPER.n_dev,
                       help=f"dev queries of the layer sweep (default: {PAPER.n_dev})")
    learn.add_argument("--seed", type=int, default=0,
                       help="seed of the contexts and dev queries drawn from the task (default: 0)")
    add_model_options(learn)
    learn.set_defaults(run=_learn)

    apply = commands.add_parser("apply", help="answer queries with a saved task vector, no demonstrations",
                                description="Answer each query with the task vector patched in; prints "
                                            "`query -> answer` lines.")
    apply.add_argument("vector", help="a file written by `tv-lens learn` or TaskVector.save")
    apply.add_argument("queries", nargs="+", help="the queries; a single - reads one query per line from stdin")
    apply.add_argument("--force", action="store_true", help="apply the vector to another model of the "
                                                            "same width anyway")
    apply.add_argument("--max-new-tokens", type=at_least(1), default=1,
                       help="tokens to generate, stopping at a newline (default: 1, the paper's first token)")
    apply.add_argument("--layer", type=at_least(0), default=None, help="layer (default: the vector's own)")
    apply.add_argument("--mode", choices=("replace", "add"), default=None,
                       help="replace the residual stream with θ or add strength·θ to it (default: the "
                            "vector's own: replace for a task vector, the paper; add for a function vector)")
    apply.add_argument("--strength", "--alpha", type=finite_float, default=1.0,
                       help="α: θ is multiplied by it in add mode (default: 1)")
    apply.add_argument("--positions", choices=("last", "all"), default="last",
                       help="patch the last query token (paper) or every query token")
    add_model_options(apply, default=None, default_text="the vector's own model")
    apply.set_defaults(run=_apply)


def _learn(args: argparse.Namespace) -> None:
    from tv_lens.files import check_writable_folder
    from tv_lens.models.loading import load_model
    from tv_lens.task_vectors.task_level import learn_task
    from tv_lens.tasks import resolve_task
    from tv_lens.tasks.prompts import PromptFormat, check_pairs

    task = resolve_task(args.task)
    check_pairs(task, PromptFormat())  # a text the arrow format cannot hold fails before the model loads
    if Path(args.out).is_dir():
        raise TvLensError(f"--out {args.out} is a directory: give the vector file's path (.safetensors)")
    check_writable_folder(Path(args.out).parent)
    model = load_model(args.model, **placement(args))
    theta = learn_task(model, task, k=args.k, seed=args.seed, n_shots=args.n_shots, layer=args.layer,
                       n_dev=args.n_dev)
    if theta.dev_accuracy:
        print(dev_curve(theta.dev_accuracy))
    path = theta.save(args.out)
    print(f"saved {path}: {theta.summary()}")


def dev_curve(accuracy: list[float], how: str = "") -> str:
    """The dev sweep that chose a vector's layer, as one line; a flat one says it chose nothing."""
    line = f"dev accuracy by layer{how}, 0 to {len(accuracy) - 1}: " + " ".join(f"{a:.2f}" for a in accuracy)
    if len(set(accuracy)) == 1:
        line += " (the same at every layer, so the first was kept: the dev items tell no layer apart)"
    return line


def _apply(args: argparse.Namespace) -> None:
    from tv_lens.task_vectors.serving import TaskVectorSolver

    queries = read_queries(args.queries)  # before the model loads: bad input fails in a moment
    theta, model = load_vector_and_model(args, queries)
    solver = TaskVectorSolver(model, theta, layer=args.layer, mode=args.mode, strength=args.strength,
                              positions=args.positions, allow_transfer=args.force)
    print_answers(queries, lambda: solver.generate(queries, max_new_tokens=args.max_new_tokens))


def load_vector_and_model(args: argparse.Namespace, queries: list[str]):
    """The vector file `args.vector` and the model it runs on (`--model`, else the vector's own;
    another model than the vector's only with `--force`); `queries` are checked by the text rule of
    the vector's prompt format before the model loads."""
    from tv_lens.models.loading import load_model
    from tv_lens.task_vectors.applying import prompt_format
    from tv_lens.task_vectors.queries import check_queries
    from tv_lens.task_vectors.vector import TaskVector, model_to_load

    theta = TaskVector.load(args.vector)
    spec = args.model or model_to_load(theta, args.vector)
    if args.model and args.model != theta.model and not args.force:
        raise TvLensError(f"{args.vector} was learned on {theta.model}, not {args.model}: drop --model, "
                          f"or pass --force to apply it anyway")
    check_queries(queries, prompt_format(theta))
    return theta, load_model(spec, **placement(args))


def read_queries(queries: list[str]) -> list[str]:
    """The queries given, or with a single `-` one query per non-empty line of stdin (UTF-8, split at
    `\n` only, a byte-order mark dropped)."""
    from tv_lens.tasks.texts import stdin_lines

    if queries != ["-"]:
        return queries
    queries = stdin_lines(sys.stdin.buffer.read())
    if not queries:
        raise TvLensError("no queries on stdin: give one query per line")
    return queries


def print_answers(queries: list[str], answer: Callable[[], list[str]]) -> None:
    """`query -> answer` per query (lines after an answer's first indented); a query too long for the
    model is one error line on stderr, then the command fails once the others are printed."""
    from tv_lens.task_vectors.queries import QueryTooLongError
    from tv_lens.tasks.texts import escape_controls, shown

    answers: Sequence[str | None]
    too_long: QueryTooLongError | None
    try:
        answers, too_long = answer(), None
    except QueryTooLongError as err:
        answers, too_long = err.answers, err
    for i, (query, text) in enumerate(zip(queries, answers)):
        if text is not None:
            lines = [escape_controls(line) for line in text.split("\n")]
            print(f"{escape_controls(query)} -> " + "\n    ".join(lines), flush=True)
        elif too_long is not None:  # only a query too long has no answer
            n_tokens = dict(too_long.too_long)[i]
            print(f"tv-lens: error: query {shown(query, 20)} {too_long.reason(n_tokens)}", file=sys.stderr, flush=True)
    if too_long:
        raise TvLensError(f"{len(too_long.too_long)} of {len(queries)} queries were too long (reported above); "
                          "the others were answered")
