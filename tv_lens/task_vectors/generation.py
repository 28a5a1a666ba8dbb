"""Steered generation: the text after each query with a vector written in, greedy or sampled, through the
key/value cache.

The prompt runs once (a left-padded batch) with the vector; each new token then runs alone against the
cache. Where the vector goes (`positions`):
- "last" (default): the prompt's last token only, the paper's single patch; the vector reaches later
  tokens through the keys and values of the patched prompt;
- "generated": the prompt's last token and every generated token;
- "all": every token, the prompt's (after its BOS) and every generated one;
- a tuple of token indices of the prompt (negative ones count from its end).
Temperature 0 is greedy; otherwise tokens are sampled (`tv_lens.task_vectors.decoding`) with a generator per query,
so the same seed gives the same text, whatever the batch. Only the new text is returned, cut before
the first stop string (default: the newline that ends an answer in the task format).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from jaxtyping import Float
from torch import Tensor

from tv_lens.errors import TvLensError, TvLensTypeError
from tv_lens.models.bridge import Model
from tv_lens.patching.engine import Budget, encode, prefill, step
from tv_lens.patching.guard import check_model
from tv_lens.patching.interventions import Intervention, Mode, Where
from tv_lens.task_vectors.applying import Vector, as_interventions, prompt_format
from tv_lens.task_vectors.decoding import Sampling, generators, row_seeds
from tv_lens.task_vectors.queries import answer_fitting, check_queries
from tv_lens.task_vectors.vector import TaskVector
from tv_lens.tasks import Task
from tv_lens.tasks.prompts import PromptFormat

STOP = "\n"
GENERATION_POSITIONS = ("last", "generated", "all")
IN_PROMPT: dict[str, Where] = {"last": "last", "generated": "last", "all": "all"}  # where each puts θ in the prompt


@dataclass
class Generation:
    """What one prompt generated: the new text (cut before the first stop string), every token
    chosen (up to and with the one completing a stop string, or EOS), and with `keep_logits` the
    logits each token was chosen from ([n_tokens, d_vocab], float32 on the CPU)."""

    text: str
    tokens: list[int] = field(default_factory=list)
    logits: Float[Tensor, "n_tokens d_vocab"] | None = None


def generate(
    model: Model,
    vector: Vector | None,
    queries: Sequence[str],
    layer: int | None = None,
    *,
    mode: Mode | None = None,
    strength: float = 1.0,
    positions: str | tuple[int, ...] = "last",
    max_new_tokens: int = 16,
    temperature: float = 0.0,
    top_p: float = 1.0,
    top_k: int = 0,
    seed: int | Sequence[int] | None = None,
    stop: str | Sequence[str] | None = STOP,
    chat: bool = False,
    fmt: PromptFormat | None = None,
    allow_transfer: bool = False,
    budget: Budget | None = None,
) -> list[str]:
    """Generate whole answers to bare queries with a vector written in (steered generation).

    The prompts run once, in a left-padded batch, with the vector; each new token then runs against the
    key/value cache. Only the new text is returned. Sampling uses a generator per query, so the same seed
    gives the same text whatever the batch.

    Args:
        model: a `TransformerBridge` in compatibility mode (`load_model`).
        vector: a `TaskVector` or `FunctionVector` placed by `layer`, `mode`, `strength` and `positions`;
            one `Intervention` or a list of them, applied as built; or None for no edit (plain generation).
        queries: the inputs to answer (a list, not one string).
        layer: where a `TaskVector` is written; default its own `layer`.
        mode: "replace", "add" or "scale" (as in `apply`); default the vector kind's.
        strength: the multiple of the vector for "add", the factor for "scale".
        positions: where the vector goes: "last" (the prompt's last token only, the paper's single patch;
            later tokens see it through the cache), "generated" (the prompt's last token and every
            generated token), "all" (every token after the prompt's BOS, and every generated one), or a
            tuple of prompt token indices (negative ones from the end). Interventions of your own take
            "last" or "generated" (which repeats them at every generated token).
        max_new_tokens: the most tokens generated per query.
        temperature: 0 is greedy; above 0, tokens are drawn from softmax(logits / temperature).
        top_p: sample from the smallest set of tokens whose probability reaches `top_p`; 1 keeps all.
        top_k: sample from the `top_k` most likely tokens; 0 keeps all.
        seed: an integer (query i draws with `tv_lens.task_vectors.decoding.row_seed(seed, i)`), a list of
            one integer per query, or None (fresh randomness).
        stop: a string or strings that end an answer, cut before the first one; default the newline that
            ends an answer in the task format; None to stop only at end-of-sequence or `max_new_tokens`.
        chat: send each query as the user's message through the tokenizer's chat template (an instruction
            model), not in the prompt format.
        fmt: the prompt format of the queries; default the vector's own, else `PromptFormat()`. Not with
            `chat`.
        allow_transfer: accept a vector learned on another model of the same `d_model`.
        budget: tokens and rows per forward pass (`tv_lens.patching.engine.Budget`); a batch holds as many
            queries as fit their longest prompt plus `max_new_tokens`.

    Returns:
        The generated text of each query, in order, cut before the first stop string, not stripped.

    Raises:
        QueryTooLongError: some prompts plus `max_new_tokens` exceed the model's token limit; raised after
            the others are answered, with every answer in its `answers` (None for the long ones).
        TvLensError: an unknown `positions`, a bad sampling setting or seed list, `chat` with `fmt` or
            without a chat template, an empty stop string; the errors of `apply`.
        TvLensTypeError: `layer`, `mode`, `strength`, or `positions` "all" or a tuple with interventions of your
            own; a `seed` of another type.
        UnsupportedModelError: `model` is not a `TransformerBridge` in compatibility mode and eval mode.
    """
    check_model(model)
    queries = check_queries(queries, prompt_format(vector, fmt))
    sampling = Sampling(temperature, top_p, top_k)
    seeds = row_seeds(seed, len(queries))
    stops = stop_strings(stop)
    edits, steer_generated = _placed(model, vector, layer, mode, strength, positions, allow_transfer)
    if chat:
        if fmt is not None:
            raise TvLensError("chat=True sends each query as the user's message: drop fmt, or drop chat")
        prompts = chat_prompts(model, queries)
    else:
        prompts = encode(model, [prompt_format(vector, fmt).query(q) for q in queries])

    def answer(fitting: list[int]) -> list[str]:
        done = generate_tokens(model, [prompts[i] for i in fitting], [edits] * len(fitting),
                               max_new_tokens=max_new_tokens, patch_generated=steer_generated, stop=stops,
                               sampling=sampling, seeds=[seeds[i] for i in fitting], budget=budget)
        return [g.text for g in done]

    return answer_fitting(model, queries, prompts, max_new_tokens, answer)


def _placed(model: Model, vector: Vector | None, layer: int | None, mode: Mode | None, strength: float,
            positions: str | tuple[int, ...], allow_transfer: bool) -> tuple[tuple[Intervention, ...], bool]:
    """The interventions of the prompt and whether generated tokens get them too."""
    if positions not in GENERATION_POSITIONS and not isinstance(positions, tuple):
        raise TvLensError(f"positions must be one of {', '.join(GENERATION_POSITIONS)} or a tuple of prompt token "
                          f"indices, not {positions!r}")
    if vector is None:
        return (), False
    if isinstance(vector, TaskVector):
        in_prompt = positions if isinstance(positions, tuple) else IN_PROMPT[positions]
        return (as_interventions(model, vector, layer, mode=mode, strength=strength, positions=in_prompt,
                                 allow_transfer=allow_transfer), positions in ("generated", "all"))
    if (layer, mode, strength) != (None, None, 1.0) or positions not in ("last", "generated"):
        raise TvLensTypeError("layer, mode, strength and positions 'all' or a tuple place a TaskVector: set them "
                              "in your own Interventions (positions='generated' repeats those at every generated "
                              "token)")
    return as_interventions(model, vector), positions == "generated"


def stop_strings(stop: str | Sequence[str] | None) -> tuple[str, ...]:
    """`stop` as a tuple of non-empty strings (None or () for none: generation ends at EOS or the length)."""
    stops = () if stop is None else (stop,) if isinstance(stop, str) else tuple(stop)
    if not all(isinstance(s, str) and s for s in stops):
        raise TvLensError(f"stop strings must be non-empty strings, got {stop!r}")
    return stops


def chat_prompts(model: Model, queries: Sequence[str]) -> list[list[int]]:
    """Token ids of each query as the user's message in the tokenizer's chat template, ready for the
    assistant's answer."""
    tokenizer = model.tokenizer
    if not getattr(tokenizer, "chat_template", None):
        raise TvLensError("this model's tokenizer has no chat template: drop chat (--chat), or load an instruction "
                          "model such as smollm2-135m")
    texts = [tokenizer.apply_chat_template([{"role": "user", "content": q}], tokenize=False,
                                           add_generation_prompt=True) for q in queries]
    return [tokenizer(text, add_special_tokens=False)["input_ids"] for text in texts]


def generate_tokens(
    model: Model,
    prompts: Sequence[Sequence[int]],
    interventions: Sequence[Sequence[Intervention]] | None = None,
    *,
    max_new_tokens: int = 16,
    patch_generated: bool = False,
    stop: str | Sequence[str] | None = STOP,
    sampling: Sampling = Sampling(),
    seeds: Sequence[int] | None = None,
    keep_logits: bool = False,
    budget: Budget | None = None,
) -> list[Generation]:
    """A `Generation` after each token prompt (with its own interventions; with `patch_generated` also
    written into every generated token), prompt i sampling with `seeds[i]` (default: i).

    Per batch (as many prompts as `budget` allows for their longest prompt plus `max_new_tokens`):
    one left-padded pass over the prompts, then one token per step for the rows still running (a
    row stops at a stop string, at an end-of-sequence token, or after `max_new_tokens`).
    """
    if max_new_tokens < 1:
        raise TvLensError(f"max_new_tokens must be at least 1, got {max_new_tokens}")
    budget = budget or Budget()
    stops = stop_strings(stop)
    interventions = list(interventions) if interventions is not None else [()] * len(prompts)
    seeds = list(seeds) if seeds is not None else list(range(len(prompts)))
    width = max((len(p) for p in prompts), default=0) + max_new_tokens
    rows = max(1, min(budget.rows, budget.tokens // width))
    done: list[Generation] = []
    for start in range(0, len(prompts), rows):
        part = slice(start, start + rows)
        done += _generate_batch(model, prompts[part], interventions[part], seeds[part], max_new_tokens,
                                patch_generated, stops, sampling, keep_logits)
    return done


def _generate_batch(model: Model, prompts, interventions, seeds, max_new_tokens, patch_generated, stops, sampling,
                    keep_logits) -> list[Generation]:
    state = prefill(model, prompts, interventions, room=max_new_tokens)
    rngs = generators(seeds)
    generated: list[list[int]] = [[] for _ in prompts]
    logits: list[list[Tensor]] = [[] for _ in prompts]
    ends = end_tokens(model)
    active = list(range(len(prompts)))
    for n in range(max_new_tokens):
        next_tokens = sampling.choose(state.logits, [rngs[row] for row in active])
        still = []
        for i, (row, token) in enumerate(zip(active, next_tokens.tolist())):
            generated[row].append(token)
            if keep_logits:
                logits[row].append(state.logits[i].detach().float().cpu())
            if not finished(model, generated[row], stops, ends):
                still.append(i)
        if not still or n == max_new_tokens - 1:
            break
        state = state.select(still)
        active = [active[i] for i in still]
        edits = [interventions[row] if patch_generated else () for row in active]
        state = step(model, state, next_tokens[still], edits)
    return [Generation(cut(model.tokenizer.decode(g, skip_special_tokens=True), stops), g,
                       torch.stack(rows) if keep_logits else None)
            for g, rows in zip(generated, logits)]


def end_tokens(model: Model) -> frozenset[int]:
    """The tokens that end a generation: the tokenizer's EOS and those of the model's generation config
    (an instruction model's end of turn)."""
    ids = {model.tokenizer.eos_token_id}
    config = getattr(getattr(model, "original_model", None), "generation_config", None)
    extra = getattr(config, "eos_token_id", None)
    ids |= set(extra) if isinstance(extra, (list, tuple)) else {extra}
    return frozenset(i for i in ids if i is not None)


def finished(model: Model, generated: list[int], stop: str | Sequence[str], ends: frozenset[int] | None = None) -> bool:
    """Whether a row's generated tokens end in an end token or contain a stop string."""
    ends = end_tokens(model) if ends is None else ends
    text = model.tokenizer.decode(generated)
    return generated[-1] in ends or any(s in text for s in stop_strings(stop))


def cut(text: str, stops: Sequence[str]) -> str:
    """`text` up to the first occurrence of any stop string."""
    at = min((i for i in (text.find(s) for s in stops) if i >= 0), default=len(text))
    return text[:at]


def score_generation(task: Task, query: str, text: str, scoring: str | None = None) -> bool:
    """Whether a generated text answers a query of a task: scoring whole answers, not first tokens.

    Args:
        task: the task the query belongs to.
        query: an input of the task.
        text: the generated text (from `generate`).
        scoring: "exact" (the text's first line, stripped, equals an accepted answer) or "prefix" (it
            starts with one: the whole answer, then anything, e.g. "Paris, France"); default "prefix" for
            a prefix-scored task, else "exact".

    Returns:
        True when the text answers the query.

    Raises:
        TvLensError: a `scoring` other than "exact" or "prefix".
        UnknownQueryError: `query` is not an input of the task (a `TvLensError` and a `KeyError`).
    """
    scoring = scoring or ("prefix" if task.scoring == "prefix" else "exact")
    if scoring not in ("exact", "prefix"):
        raise TvLensError(f"generation scoring must be 'exact' or 'prefix', not {scoring!r}")
    line = text.split(STOP)[0].strip()
    answers = [a.strip() for a in task.answers(query) if a.strip()]
    if scoring == "exact":
        return line in answers
    return any(line.startswith(a) for a in answers)
