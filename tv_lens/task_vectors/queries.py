"""Queries from users: refused when malformed (the text rule of the prompt format, `PromptFormat.
text_problem`), never silently truncated, answered one by one when some of them are too long for the model."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from tv_lens.errors import TvLensError, TvLensTypeError
from tv_lens.models.bridge import Model
from tv_lens.patching.engine import token_limit
from tv_lens.tasks.prompts import PromptFormat


class QueryTooLongError(TvLensError):
    """Some queries exceed the model's token limit; the others were answered.

    `answers[i]` is query i's answer (None for a query that was too long); `too_long` lists
    (index, token count) of the long ones and `limit` the model's limit.
    """

    def __init__(self, too_long: list[tuple[int, int]], limit: int, room: int, answers: list[str | None]):
        self.too_long, self.limit, self.room, self.answers = too_long, limit, room, answers
        counts = "; ".join(f"query {i} {self.reason(n)}" for i, n in too_long)
        answered = len(answers) - len(too_long)
        super().__init__(f"{counts}: shorten it; {answered} other quer{'y was' if answered == 1 else 'ies were'} "
                         f"answered (see .answers)")

    def reason(self, n_tokens: int) -> str:
        """Why a query of `n_tokens` prompt tokens was not answered."""
        extra = f" plus {self.room} to generate" if self.room else ""
        return f"has {n_tokens} tokens (with the prompt{extra}), over this model's limit of {self.limit}"


def check_queries(queries: Sequence[str], fmt: PromptFormat) -> list[str]:
    """The queries as a list; a bare string, an empty list, an empty or whitespace-only query, or one
    the prompt format `fmt` cannot hold (a line break where it splits prompts) is refused."""
    if isinstance(queries, str):
        raise TvLensTypeError(f"queries must be a list of strings, not one string: write [{queries!r}]")
    queries = list(queries)
    if not queries:
        raise TvLensError("no queries: give at least one")
    return [fmt.check_text(q, f"query {i}") for i, q in enumerate(queries)]


def answer_fitting(
    model: Model,
    queries: Sequence[str],
    prompts: Sequence[Sequence[int]],
    room: int,
    answer: Callable[[list[int]], list[str]],
) -> list[str]:
    """`answer(indices)` of the prompts that fit the model's token limit with `room` tokens to
    spare; if some do not, `QueryTooLongError` (carrying the other answers) after the rest ran."""
    limit = token_limit(model)
    too_long = [(i, len(p)) for i, p in enumerate(prompts) if limit and len(p) + room > limit]
    skip = {i for i, _ in too_long}
    fitting = [i for i in range(len(prompts)) if i not in skip]
    answers: list[str | None] = [None] * len(queries)
    if fitting:
        for i, a in zip(fitting, answer(fitting)):
            answers[i] = a
    if too_long and limit:  # only a limit makes a query too long
        raise QueryTooLongError(too_long, limit, room, answers)
    return [a for a in answers if a is not None]  # every query fitted, so each has its answer
