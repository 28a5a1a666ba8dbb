"""Generic activation hooks for any TransformerLens-style hooked module.

Capture, replace, add (times a strength) or scale (by a strength) an activation at a hook name, at
all positions, one position for every row, or a position per row; at a per-head hook (`attn.hook_z`,
[batch, pos, n_heads, d_head]) an edit can be limited to one head with `head=h`. Each edit is a hook
pair for `run_with_hooks(fwd_hooks=[...])` or for `with hooked(model, [...]):`, which acts on the
forward passes of the Python thread that entered it (another thread's pass on the same model runs
unhooked). Nothing here knows about tasks; `tv_lens.patching.interventions` builds tv_lens's own edits from these.

    with capturing(model, ["blocks.3.hook_resid_post"], index=-1) as acts:
        model(tokens)
    acts["blocks.3.hook_resid_post"]            # [batch, d_model]
    model.run_with_hooks(tokens, fwd_hooks=[adding("blocks.3.hook_resid_post", v, strength=4.0)])
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Protocol, runtime_checkable

import torch
from jaxtyping import Float, Int
from torch import Tensor

# which positions of [batch, pos, ...] an edit touches: all (None), one for every row (int), or one per row
Index = int | Sequence[int] | Int[Tensor, " batch"] | None
HookPair = tuple[str, Callable]


@runtime_checkable
class Hookable(Protocol):
    """A TransformerLens-style hooked module (a `TransformerBridge`, a `HookedTransformer`, any `HookedRootModule`).

    All this module needs of a model is its `hooks(fwd_hooks=...)` context manager.
    """

    def hooks(self, fwd_hooks: list[HookPair]) -> AbstractContextManager[object]:
        """Attach hook pairs for the duration of a `with` block.

        Args:
            fwd_hooks: (hook name, hook function) pairs.
        """
        ...


def _select(act: Tensor, index: Index, rows: Tensor | None = None, head: int | None = None):
    """An index into `act` ([batch, pos, ...]) choosing the given rows, positions and head."""
    batch = torch.arange(act.shape[0], device=act.device) if rows is None else rows.to(act.device)
    pos: slice | int | Tensor
    if index is None:
        pos = slice(None)
    elif isinstance(index, int):
        pos = index
    else:
        pos = torch.as_tensor(index, device=act.device)
    if head is not None:
        return batch, pos, head
    return (batch,) if index is None else (batch, pos)


def _editing(name: str, edit: Callable[[Tensor, tuple], None], index, rows, head) -> HookPair:
    rows = None if rows is None else torch.as_tensor(rows)

    def hook_fn(act: Tensor, hook) -> Tensor:
        edit(act, _select(act, index, rows, head))
        return act

    return name, hook_fn


def replacing(
    name: str,
    value: Float[Tensor, "... d"],
    index: Index = None,
    rows: Sequence[int] | Tensor | None = None,
    head: int | None = None,
) -> HookPair:
    """A hook that overwrites the activation at a hook point (chosen rows, positions and head) with a value.

    Args:
        name: the hook point, e.g. `blocks.3.hook_resid_post`.
        value: what to write, broadcast against the selected activations (e.g. [d_model]).
        index: the positions: None for all, an int for that position of every row, or one position per
            row (a sequence or [batch] tensor).
        rows: the rows to edit, paired one to one with the positions when `index` lists them; None for every row.
        head: one head of a per-head hook (`attn.hook_z`, [batch, pos, n_heads, d_head]); None for all.

    Returns:
        A (hook name, hook function) pair for `run_with_hooks(fwd_hooks=[...])` or `hooked`.
    """
    return _editing(name, lambda act, idx: act.__setitem__(idx, value.to(act)), index, rows, head)


def adding(
    name: str,
    vector: Float[Tensor, "... d"],
    strength: float | Float[Tensor, "..."] = 1.0,
    index: Index = None,
    rows: Sequence[int] | Tensor | None = None,
    head: int | None = None,
) -> HookPair:
    """A hook that adds `strength * vector` to the activation at a hook point: steering.

    Args:
        name: the hook point, e.g. `blocks.3.hook_resid_post`.
        vector: what to add, broadcast against the selected activations (e.g. [d_model]).
        strength: the multiple of `vector`; a tensor gives each selected activation its own.
        index: the positions: None for all, an int for that position of every row, or one position per
            row (a sequence or [batch] tensor).
        rows: the rows to edit, paired one to one with the positions when `index` lists them; None for every row.
        head: one head of a per-head hook (`attn.hook_z`, [batch, pos, n_heads, d_head]); None for all.

    Returns:
        A (hook name, hook function) pair for `run_with_hooks(fwd_hooks=[...])` or `hooked`.

    Example:
        ```python
        model.run_with_hooks(tokens, fwd_hooks=[adding("blocks.3.hook_resid_post", v, strength=4.0)])
        ```
    """

    def add(act: Tensor, idx: tuple) -> None:
        act[idx] = act[idx] + strength * vector.to(act)

    return _editing(name, add, index, rows, head)


def scaling(
    name: str,
    strength: float | Float[Tensor, "..."],
    index: Index = None,
    rows: Sequence[int] | Tensor | None = None,
    head: int | None = None,
) -> HookPair:
    """A hook that multiplies the activation at a hook point by a factor (ablation when 0).

    Args:
        name: the hook point, e.g. `blocks.3.attn.hook_z`.
        strength: the factor; a tensor broadcast against the selected activations gives each its own.
        index: the positions: None for all, an int for that position of every row, or one position per
            row (a sequence or [batch] tensor).
        rows: the rows to edit, paired one to one with the positions when `index` lists them; None for every row.
        head: one head of a per-head hook (`attn.hook_z`, [batch, pos, n_heads, d_head]); None for all.

    Returns:
        A (hook name, hook function) pair for `run_with_hooks(fwd_hooks=[...])` or `hooked`.
    """

    def scale(act: Tensor, idx: tuple) -> None:
        act[idx] = act[idx] * (strength.to(act) if isinstance(strength, Tensor) else strength)

    return _editing(name, scale, index, rows, head)


def capture_hooks(
    names: Sequence[str], store: dict[str, Tensor], index: Index = None
) -> list[HookPair]:
    """Hooks that copy the activation at each hook point into a dict, for `run_with_hooks` or `hooked`.

    Args:
        names: the hook points.
        store: the dict each activation is copied into, under its hook name (detached; a later pass
            replaces it).
        index: the positions: None for all ([batch, pos, ...]), an int for that position of every row
            ([batch, ...]), or one position per row.

    Returns:
        One (hook name, hook function) pair per name.
    """

    def make(name: str) -> Callable:
        def hook_fn(act: Tensor, hook) -> None:
            store[name] = act[_select(act, index)].detach().clone()

        return hook_fn

    return [(name, make(name)) for name in names]


def _in_thread(hook_fn: Callable, thread: int) -> Callable:
    """`hook_fn`, acting only in forward passes that run in `thread` (a no-op in any other)."""

    def in_thread(act: Tensor, hook) -> Tensor | None:
        return hook_fn(act, hook) if threading.get_ident() == thread else None

    return in_thread


@contextmanager
def hooked(model: Hookable, fwd_hooks: Sequence[HookPair]) -> Iterator[None]:
    """Within the `with` block, the forward passes of `model` that this thread runs take the hooks.

    A pass in another Python thread sharing the model runs unhooked; the hooks are removed when the block
    ends, also on an error.

    Args:
        model: a TransformerLens-style hooked module (`Hookable`).
        fwd_hooks: (hook name, hook function) pairs, e.g. from `replacing`, `adding`, `scaling`,
            `capture_hooks`.
    """
    thread = threading.get_ident()
    with model.hooks(fwd_hooks=[(name, _in_thread(fn, thread)) for name, fn in fwd_hooks]):
        yield


@contextmanager
def capturing(model: Hookable, names: Sequence[str] | str, index: Index = None) -> Iterator[dict]:
    """Within the `with` block, every forward pass of `model` in this thread records activations into a dict.

    Args:
        model: a TransformerLens-style hooked module (`Hookable`).
        names: a hook point or a list of them.
        index: the positions: None for all ([batch, pos, ...]), an int for that position of every row
            ([batch, ...]), or one position per row.

    Yields:
        The dict, hook name to its activation in the latest pass.

    Example:
        ```python
        with capturing(model, "blocks.3.hook_resid_post", index=-1) as acts:
            model(tokens)
        acts["blocks.3.hook_resid_post"]  # [batch, d_model]
        ```
    """
    names = [names] if isinstance(names, str) else list(names)
    store: dict[str, Tensor] = {}
    with hooked(model, capture_hooks(names, store, index)):
        yield store
