"""`tv-lens generate`: steered generation with a saved vector, greedy or sampled."""

from __future__ import annotations

import argparse

from tv_lens.cli.options import add_model_options
from tv_lens.errors import TvLensError


def add_commands(commands) -> None:
    """Register `generate` on the `tv-lens` subparsers."""
    p = commands.add_parser(
        "generate", help="generate text with a saved vector written in, greedy or sampled",
        description="Generate the text after each query with a task vector or function vector written in "
                    "(by default at the prompt's last token, in the vector's own mode), greedy or sampled; "
                    "prints `query -> text` lines. The same --seed gives the same text.")
    p.add_argument("vector", help="a file written by `tv-lens learn`, `tv-lens fv` or TaskVector.save")
    p.add_argument("queries", nargs="+", help="the queries; a single - reads one query per line from stdin")
    p.add_argument("--max-new-tokens", type=int, default=16, help="tokens to generate at most (default: 16)")
    p.add_argument("--temperature", type=float, default=0.0,
                   help="sampling temperature (default: 0, greedy)")
    p.add_argument("--top-p", type=float, default=1.0,
                   help="sample from the smallest set of tokens whose probability reaches P (default: 1, all)")
    p.add_argument("--top-k", type=int, default=0, help="sample from the K most likely tokens (default: 0, all)")
    p.add_argument("--seed", type=int, default=None,
                   help="seed of the sampling: query i draws from its own generator seeded from it "
                        "(default: fresh randomness)")
    p.add_argument("--stop", action="append", metavar="TEXT",
                   help="stop before TEXT (repeatable; escapes such as \\n are read; default: a newline)")
    p.add_argument("--no-stop", action="store_true", help="no stop string: stop at end of sequence or the length")
    p.add_argument("--chat", action="store_true",
                   help="send each query as the user's message through the model's chat template "
                        "(an instruction model such as smollm2-135m)")
    p.add_argument("--layer", type=int, default=None, help="layer (default: the vector's own)")
    p.add_argument("--mode", choices=("replace", "add"), default=None,
                   help="replace the residual stream with the vector or add strength x vector to it "
                        "(default: the vector's own: replace for a task vector, add for a function vector)")
    p.add_argument("--strength", type=float, default=1.0, help="the vector is multiplied by it in add mode "
                                                                "(default: 1)")
    p.add_argument("--positions", choices=("last", "generated", "all"), default="last",
                   help="where the vector goes: the prompt's last token (default, the paper), that and every "
                        "generated token, or every token")
    p.add_argument("--force", action="store_true", help="use the vector on another model of the same width anyway")
    add_model_options(p, default=None, default_text="the vector's own model")
    p.set_defaults(run=_generate)


def stops_from(args: argparse.Namespace) -> tuple[str, ...] | None:
    """The stop strings asked for (escapes read), None for --no-stop, the default newline otherwise."""
    if args.no_stop and args.stop:
        raise TvLensError("--no-stop and --stop exclude each other: choose one")
    if args.no_stop:
        return None
    if not args.stop:
        return ("\n",)
    try:
        return tuple(s.encode("latin-1", "backslashreplace").decode("unicode_escape") for s in args.stop)
    except UnicodeDecodeError as err:
        raise TvLensError(f"--stop has a malformed escape ({err.reason}): write \\n, \\t or plain text") from None


def _generate(args: argparse.Namespace) -> None:
    from tv_lens.cli.vectors import load_vector_and_model, print_answers, read_queries
    from tv_lens.task_vectors.generation import generate

    stops = stops_from(args)
    queries = read_queries(args.queries)
    theta, model = load_vector_and_model(args, queries)
    print_answers(queries, lambda: generate(
        model, theta, queries, layer=args.layer, mode=args.mode, strength=args.strength, positions=args.positions,
        max_new_tokens=args.max_new_tokens, temperature=args.temperature, top_p=args.top_p, top_k=args.top_k,
        seed=args.seed, stop=stops, chat=args.chat, allow_transfer=args.force))
