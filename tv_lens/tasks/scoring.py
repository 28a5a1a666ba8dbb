"""Scorers: named rules deciding whether a prediction matches a task's accepted outputs."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from tv_lens.errors import TvLensError

Scorer = Callable[[str, Sequence[str]], bool]

_SCORERS: dict[str, Scorer] = {}


def exact_match(prediction: str, answers: Sequence[str]) -> bool:
    """True when the stripped prediction equals one of the stripped accepted outputs."""
    guess = prediction.strip()
    return any(guess == answer.strip() for answer in answers)


def prefix_match(prediction: str, answers: Sequence[str]) -> bool:
    """True when prediction and an accepted output are prefixes of one another (after strip).

    Used for knowledge tasks, where only the first token is read ("Par" counts for "Paris");
    an empty prediction never counts.
    """
    guess = prediction.strip()
    if not guess:
        return False
    return any(
        answer.strip().startswith(guess) or guess.startswith(answer.strip())
        for answer in answers
        if answer.strip()
    )


def register_scorer(name: str, scorer: Scorer, *, overwrite: bool = False) -> None:
    """Make `scorer(prediction, answers) -> bool` available to tasks under `name`."""
    if not name or not isinstance(name, str):
        raise TvLensError("scorer name must be a non-empty string")
    if name in _SCORERS and not overwrite and _SCORERS[name] is not scorer:
        raise TvLensError(f"scorer {name!r} already exists; pass overwrite=True to replace it")
    _SCORERS[name] = scorer


def get_scorer(name: str) -> Scorer:
    """Return the scorer registered under `name`; TvLensError listing the valid names otherwise."""
    try:
        return _SCORERS[name]
    except KeyError:
        raise TvLensError(f"unknown scorer {name!r}; valid scorers: {', '.join(list_scorers())}") from None


def list_scorers() -> list[str]:
    """Names of all registered scorers, in registration order."""
    return list(_SCORERS)


register_scorer("exact", exact_match)
register_scorer("prefix", prefix_match)
register_scorer("any_of", exact_match)
