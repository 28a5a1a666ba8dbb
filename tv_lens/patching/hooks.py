"""Generic activation hooks for any TransformerLens-style hooked module.

Capture, replace, add (with a strength) or scale an activation at a hook name, at all positions,
one position for every row, or a position per row; at a per-head hook (`attn.hook_z`,
[batch, pos, n_heads, d_head]) an edit can be limited to one head with `head=h`. Each edit comes as
a hook pair for `run_with_hooks(fwd_hooks=[...])` and as a context manager. Nothing here knows
about tasks.

    with capturing(model, ["blocks.3.hook_resid_post"], positions=-1) as acts:
        model(tokens)
    acts["blocks.3.hook_resid_post"]            # [batch, d_model]
    model.run_with_hooks(tokens, fwd_hooks=[adding("blocks.3.hook_resid_post", v, alpha=4.0)])
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import torch
from jaxtyping import Float, Int
from torch import Tensor

Positions = int | Sequence[int] | Int[Tensor, " batch"] | None
HookPair = tuple[str, Callable]


def _select(act: Tensor, positions: Positions, rows: Tensor | None = None, head: int | None = None):
    """An index into `act` ([batch, pos, ...]) choosing the given rows, positions and head."""
    batch = torch.arange(act.shape[0], device=act.device) if rows is None else rows.to(act.device)
    if positions is None:
        pos = slice(None)
    elif isinstance(positions, int):
        pos = positions
    else:
        pos = torch.as_tensor(positions, device=act.device)
    if head is not None:
        return batch, pos, head
    return (batch,) if positions is None else (batch, pos)


def _editing(name: str, edit: Callable[[Tensor, tuple], None], positions, rows, head) -> HookPair:
    rows = None if rows is None else torch.as_tensor(rows)

    def hook_fn(act: Tensor, hook) -> Tensor:
        edit(act, _select(act, positions, rows, head))
        return act

    return name, hook_fn


def replacing(
    name: str,
    value: Float[Tensor, "... d"],
    positions: Positions = None,
    rows: Sequence[int] | Tensor | None = None,
    head: int | None = None,
) -> HookPair:
    """A hook that overwrites the activation at `name` (chosen rows, positions and head) with `value`."""
    return _editing(name, lambda act, idx: act.__setitem__(idx, value.to(act)), positions, rows, head)


def adding(
    name: str,
    vector: Float[Tensor, "... d"],
    alpha: float = 1.0,
    positions: Positions = None,
    rows: Sequence[int] | Tensor | None = None,
    head: int | None = None,
) -> HookPair:
    """A hook that adds `alpha * vector` to the activation at `name` (steering)."""

    def add(act: Tensor, idx: tuple) -> None:
        act[idx] = act[idx] + alpha * vector.to(act)

    return _editing(name, add, positions, rows, head)


def scaling(
    name: str,
    factor: float | Float[Tensor, "..."],
    positions: Positions = None,
    rows: Sequence[int] | Tensor | None = None,
    head: int | None = None,
) -> HookPair:
    """A hook that multiplies the activation at `name` by `factor` (ablation when 0; a tensor
    broadcast against the selected activations gives each its own factor)."""

    def scale(act: Tensor, idx: tuple) -> None:
        act[idx] = act[idx] * (factor.to(act) if isinstance(factor, Tensor) else factor)

    return _editing(name, scale, positions, rows, head)


def capture_hooks(
    names: Sequence[str], store: dict[str, Tensor], positions: Positions = None
) -> list[HookPair]:
    """Hooks that copy the activation at each name (at `positions`) into `store[name]`."""

    def make(name: str) -> Callable:
        def hook_fn(act: Tensor, hook) -> None:
            store[name] = act[_select(act, positions)].detach().clone()

        return hook_fn

    return [(name, make(name)) for name in names]


@contextmanager
def hooked(model, fwd_hooks: Sequence[HookPair]) -> Iterator[None]:
    """Attach `fwd_hooks` to `model` for the duration of the block; always removed afterwards."""
    with model.hooks(fwd_hooks=list(fwd_hooks)):
        yield


@contextmanager
def capturing(model, names: Sequence[str] | str, positions: Positions = None) -> Iterator[dict]:
    """Within the block, every forward of `model` records the activations at `names` in the dict."""
    names = [names] if isinstance(names, str) else list(names)
    store: dict[str, Tensor] = {}
    with hooked(model, capture_hooks(names, store, positions)):
        yield store


@contextmanager
def patched(model, *hook_pairs: HookPair) -> Iterator[None]:
    """Within the block, `model` runs with the given edits (from `replacing`, `adding`, `scaling`)."""
    with hooked(model, hook_pairs):
        yield
