"""Generators of the algorithmic tasks: deterministic pairs built in code, no data files. The paper's six,
and four compound list tasks for vector composition (Todd et al.): the first or last item of a list,
then capitalised or moved to the next letter."""

from __future__ import annotations

import random
from string import ascii_lowercase, ascii_uppercase

LIST_POOL_SIZE = 1000
LIST_POOL_SEED = 0


def next_letter_pairs() -> dict[str, str]:
    """a->b, ..., y->z."""
    return dict(zip(ascii_lowercase[:-1], ascii_lowercase[1:]))


def prev_letter_pairs() -> dict[str, str]:
    """b->a, ..., z->y."""
    return dict(zip(ascii_lowercase[1:], ascii_lowercase[:-1]))


def to_upper_pairs() -> dict[str, str]:
    """a->A, ..., z->Z."""
    return dict(zip(ascii_lowercase, ascii_uppercase))


def to_lower_pairs() -> dict[str, str]:
    """A->a, ..., Z->z."""
    return dict(zip(ascii_uppercase, ascii_lowercase))


def letter_lists(count: int = LIST_POOL_SIZE, seed: int = LIST_POOL_SEED) -> list[list[str]]:
    """`count` distinct lists of 2-4 distinct lowercase letters, the same for a given seed."""
    rng = random.Random(seed)
    seen: set[str] = set()
    lists: list[list[str]] = []
    while len(lists) < count:
        letters = rng.sample(ascii_lowercase, rng.randint(2, 4))
        key = ",".join(letters)
        if key not in seen:
            seen.add(key)
            lists.append(letters)
    return lists


def list_first_pairs() -> dict[str, str]:
    """`q,f,a`->`q` over the fixed pool of letter lists."""
    return {",".join(letters): letters[0] for letters in letter_lists()}


def list_last_pairs() -> dict[str, str]:
    """`q,f,a`->`a` over the fixed pool of letter lists."""
    return {",".join(letters): letters[-1] for letters in letter_lists()}


def _compound_pairs(pick: int, transform: dict[str, str]) -> dict[str, str]:
    """`q,f,a` -> transform(item `pick` of the list), over the fixed pool of letter lists; lists whose
    picked letter the transform does not map (z has no next letter) are left out."""
    return {",".join(letters): transform[letters[pick]] for letters in letter_lists() if letters[pick] in transform}


def list_first_upper_pairs() -> dict[str, str]:
    """`q,f,a`->`Q`: the first item, capitalised."""
    return _compound_pairs(0, to_upper_pairs())


def list_last_upper_pairs() -> dict[str, str]:
    """`q,f,a`->`A`: the last item, capitalised."""
    return _compound_pairs(-1, to_upper_pairs())


def list_first_next_pairs() -> dict[str, str]:
    """`q,f,a`->`r`: the letter after the first item (lists starting with z left out)."""
    return _compound_pairs(0, next_letter_pairs())


def list_last_next_pairs() -> dict[str, str]:
    """`q,f,a`->`b`: the letter after the last item (lists ending with z left out)."""
    return _compound_pairs(-1, next_letter_pairs())
