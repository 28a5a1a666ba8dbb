"""Multi-token answers: greedy generation with θ patched in, through the key/value cache.

The prompt runs once with the patch (at its last token, or every query token); each generated
token then runs alone against the cache. By default generated tokens are not patched: that is the
paper's single patch, and θ reaches later tokens only through the keys and values of the patched
prompt. `patch_generated=True` writes θ into every generated token as well.
"""

from __future__ import annotations

from collections.abc import Sequence

from tv_lens.patching.engine import Budget, encode, prefill, step
from tv_lens.patching.guard import check_model
from tv_lens.patching.interventions import Intervention, Mode, Positions
from tv_lens.task_vectors.applying import Vector, as_interventions, prompt_format
from tv_lens.task_vectors.queries import answer_fitting, check_queries
from tv_lens.tasks import Task
from tv_lens.tasks.prompts import PromptFormat

STOP = "\n"


def generate(
    model,
    vector: Vector | None,
    queries: Sequence[str],
    layer: int | None = None,
    *,
    mode: Mode | None = None,
    strength: float = 1.0,
    positions: Positions = "last",
    max_new_tokens: int = 16,
    patch_generated: bool = False,
    stop: str = STOP,
    fmt: PromptFormat | None = None,
    allow_transfer: bool = False,
    budget: Budget | None = None,
) -> list[str]:
    """Greedy continuation of each bare query `x ->` with `vector` written in (a `TaskVector`
    placed by `layer`, `mode`, `strength` and `positions`, as in `apply`, or interventions), cut
    before the first `stop`.

    `vector=None` generates from the bare queries without an edit (the zero-shot baseline).
    """
    check_model(model)
    queries = check_queries(queries)
    edits = () if vector is None else as_interventions(model, vector, layer, mode=mode, strength=strength,
                                                       positions=positions, allow_transfer=allow_transfer)
    prompts = encode(model, [prompt_format(vector, fmt).query(q) for q in queries])
    return answer_fitting(model, queries, prompts, max_new_tokens,
                          lambda fitting: generate_tokens(model, fitting, [edits] * len(fitting),
                                                          max_new_tokens=max_new_tokens,
                                                          patch_generated=patch_generated, stop=stop,
                                                          budget=budget))


def generate_tokens(
    model,
    prompts: Sequence[Sequence[int]],
    interventions: Sequence[Sequence[Intervention]] | None = None,
    *,
    max_new_tokens: int = 16,
    patch_generated: bool = False,
    stop: str = STOP,
    budget: Budget | None = None,
) -> list[str]:
    """Greedy text after each token prompt (with its own interventions), cut before the first `stop`.

    Per batch (as many prompts as `budget` allows for their longest prompt plus `max_new_tokens`):
    one left-padded pass over the prompts, then one token per step for the rows still running (a
    row stops at `stop`, at EOS, or after `max_new_tokens`).
    """
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be at least 1, got {max_new_tokens}")
    budget = budget or Budget()
    interventions = list(interventions) if interventions is not None else [()] * len(prompts)
    width = max((len(p) for p in prompts), default=0) + max_new_tokens
    rows = max(1, min(budget.rows, budget.tokens // width))
    texts: list[str] = []
    for start in range(0, len(prompts), rows):
        texts += _generate_batch(model, prompts[start:start + rows], interventions[start:start + rows],
                                 max_new_tokens, patch_generated, stop)
    return texts


def _generate_batch(model, prompts, interventions, max_new_tokens, patch_generated, stop) -> list[str]:
    state = prefill(model, prompts, interventions, room=max_new_tokens)
    generated: list[list[int]] = [[] for _ in prompts]
    active = list(range(len(prompts)))
    for n in range(max_new_tokens):
        next_tokens = state.logits.argmax(-1)
        still = []
        for i, (row, token) in enumerate(zip(active, next_tokens.tolist())):
            generated[row].append(token)
            if not finished(model, generated[row], stop):
                still.append(i)
        if not still or n == max_new_tokens - 1:
            break
        state = state.select(still)
        active = [active[i] for i in still]
        edits = [interventions[row] if patch_generated else () for row in active]
        state = step(model, state, next_tokens[still], edits)
    return [model.tokenizer.decode(g, skip_special_tokens=True).split(stop)[0] for g in generated]


def finished(model, generated: list[int], stop: str) -> bool:
    """Whether a row's generated tokens end in EOS or contain `stop`."""
    return generated[-1] == model.tokenizer.eos_token_id or stop in model.tokenizer.decode(generated)


def score_generation(task: Task, query: str, text: str, scoring: str | None = None) -> bool:
    """Whether generated `text` answers `query`: its first line, stripped, must equal an accepted
    answer ("exact") or start with one ("prefix": the whole answer, then anything, e.g. "Paris, France").

    `scoring` defaults to "prefix" for prefix-scored tasks and "exact" otherwise.
    """
    scoring = scoring or ("prefix" if task.scoring == "prefix" else "exact")
    if scoring not in ("exact", "prefix"):
        raise ValueError(f"generation scoring must be 'exact' or 'prefix', not {scoring!r}")
    line = text.split(STOP)[0].strip()
    answers = [a.strip() for a in task.answers(query) if a.strip()]
    if scoring == "exact":
        return line in answers
    return any(line.startswith(a) for a in answers)
