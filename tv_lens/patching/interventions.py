"""Where θ is written into the model: one `Intervention` type, its checks, and its hooks.

An intervention names a hook point (`blocks.{layer}.hook_resid_post` for a task vector,
`blocks.{layer}.attn.hook_z` with a head for a function-vector head), the positions it edits and
how: replace the activation with `value`, add `strength * value`, or multiply it by `strength`.
The engine (`tv_lens.patching.engine`) writes each run's interventions into a left-padded batch;
`intervening(model, ...)` writes them into every forward pass of the model inside a `with` block.

    with intervening(model, [Intervention(layer=9, value=theta.at(9))]):
        logits = model(model.to_tokens("hot ->"))
"""

from __future__ import annotations

import math
import numbers
import threading
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal, get_args

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from tv_lens.errors import TvLensError
from tv_lens.models.bridge import Model
from tv_lens.patching import hooks

RESID_POST = "blocks.{layer}.hook_resid_post"
HOOK_Z = "blocks.{layer}.attn.hook_z"

Mode = Literal["replace", "add", "scale"]
Where = Literal["last", "all"]
Positions = Where | tuple[int, ...]


@dataclass(frozen=True, eq=False)
class Intervention:
    """One edit of an activation: where a vector is written into a forward pass, and how.

    Residual task vectors and head-level function vectors are two kinds of the same edit. `apply`,
    `generate` and `TaskVectorSolver` take interventions of your own; `intervening` writes them into any
    forward pass; `TaskVector.intervention` builds one from a vector.

    Attributes:
        layer: the layer, filled into `hook`.
        value: [d_model] at a residual hook, [d_head] with a `head` at `attn.hook_z`; unused by "scale"
            (may be None there).
        hook: the hook template, e.g. `blocks.{layer}.hook_resid_post` (default) or `blocks.{layer}.attn.hook_z`.
        head: one head of a per-head hook; None for the whole activation.
        positions: "last" (the paper's: the last token), "all" (every real token after a leading BOS), or
            a tuple of token indices of the run (negative ones from its end).
        mode: "replace" writes `value`; "add" adds `strength * value`; "scale" multiplies the activation by
            `strength`.
        strength: the multiple of `value` for "add", the factor for "scale".

    Raises:
        TvLensError: a `value` that is not a 1-D float tensor; an unknown mode; bad positions; no `value` for
            "replace" or "add"; a strength that is not a finite number.

    Example:
        ```python
        with tv.intervening(model, [tv.Intervention(layer=9, value=theta.at(9))]):
            logits = model(model.to_tokens("example:hot->"))
        ```
    """

    layer: int
    value: Float[Tensor, " width"] | None
    hook: str = RESID_POST
    head: int | None = None
    positions: Positions = "last"
    mode: Mode = "replace"
    strength: float = 1.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "strength", check_strength(self.strength))
        if self.value is not None and (not isinstance(self.value, Tensor) or self.value.ndim != 1
                                       or not self.value.dtype.is_floating_point):
            raise TvLensError(f"intervention value must be a one-dimensional float tensor ([d_model], or [d_head] "
                              f"with a head), got {_described(self.value)}: for a TaskVector's [n_layers, d_model] "
                              f"tensor, give one layer's row (theta.at(layer))")
        if self.mode not in get_args(Mode):
            raise TvLensError(f"intervention mode must be one of {get_args(Mode)}, not {self.mode!r}")
        positions: object = self.positions  # any sequence of indices is taken, as a tuple
        if not isinstance(positions, str) and isinstance(positions, Sequence):
            positions = tuple(positions)
            object.__setattr__(self, "positions", positions)
        valid_tuple = isinstance(positions, tuple) and positions and len(set(positions)) == len(positions) and all(
            isinstance(p, int) and not isinstance(p, bool) for p in positions)
        if positions not in get_args(Where) and not valid_tuple:
            raise TvLensError(f"intervention positions must be 'last', 'all' or a non-empty tuple of distinct "
                              f"token indices, not {positions!r}")
        if self.value is None and self.mode != "scale":
            raise TvLensError(f"a {self.mode!r} intervention needs a value (only 'scale' works without one)")

    @property
    def name(self) -> str:
        """The hook point this intervention edits (`hook` with its layer filled in)."""
        return self.hook.format(layer=self.layer)

    @property
    def reuses_prefix(self) -> bool:
        """Whether a run with this edit may share a cached prefix (only the last token is edited)."""
        return self.positions == "last"

    def hook_pairs(self, query: Callable[[], Bool[Tensor, "batch pos"]]) -> list[hooks.HookPair]:
        """This edit as hook pairs for every row of any forward pass (one per explicit position).

        Args:
            query: called when the hook runs, for "all": the [batch, pos] mask of the positions to edit.

        Returns:
            (hook name, hook function) pairs for `tv_lens.patching.hooks.hooked` or `run_with_hooks`.
        """
        if self.positions != "all":
            positions = [-1] if self.positions == "last" else self.positions
            return [_edit(self, self.name, self.value, self.strength, p, None) for p in positions]

        def edit_query(act: Tensor, hook) -> Tensor:
            rows, columns = query().nonzero(as_tuple=True)
            return _edit(self, self.name, self.value, self.strength, columns, rows)[1](act, hook)

        return [(self.name, edit_query)]


def query_positions(model: Model, tokens: Int[Tensor, "batch pos"], mask: Int[Tensor, "batch pos"]
                    ) -> Bool[Tensor, "batch pos"]:
    """The real (unpadded) positions of left-padded `tokens`, less each row's leading BOS."""
    real = mask.bool()
    first = real.int().argmax(dim=1)
    rows = torch.arange(tokens.shape[0], device=tokens.device)
    bos = getattr(getattr(model, "tokenizer", None), "bos_token_id", None)
    leading_bos = real[rows, first] & (tokens[rows, first] == bos) if bos is not None else None
    if leading_bos is not None:
        real[rows[leading_bos], first[leading_bos]] = False
    return real


def check_strength(strength: object) -> float:
    """`strength` as a float if it is a finite real number, else a one-line TvLensError."""
    if isinstance(strength, bool) or not isinstance(strength, numbers.Real) or not math.isfinite(strength):
        raise TvLensError(f"strength must be a finite number, got {strength!r}")
    return float(strength)


def _described(value: object) -> str:
    if isinstance(value, Tensor):
        return f"a {str(value.dtype).removeprefix('torch.')} tensor of shape {list(value.shape)}"
    return f"a {type(value).__name__}"


def check_layer(model: Model, layer: int) -> None:
    """Refuse a layer the model lacks (or that is not an integer)."""
    if isinstance(layer, bool) or not isinstance(layer, int):
        raise TvLensError(f"layer must be an integer, got {layer!r}")
    if not 0 <= layer < model.cfg.n_layers:
        raise TvLensError(f"layer {layer} out of range: this model has layers 0..{model.cfg.n_layers - 1}")


def check_intervention(model: Model, intervention: Intervention) -> None:
    """Refuse an intervention the model cannot take: a layer, hook or head it lacks, or a value of
    another width (d_model at residual hooks, d_head at one head)."""
    check_layer(model, intervention.layer)
    name = intervention.name
    hook_dict = getattr(model, "hook_dict", None)
    if hook_dict is not None and name not in hook_dict:
        raise TvLensError(f"this model has no hook point {name!r}: check the hook template {intervention.hook!r}")
    head, value = intervention.head, intervention.value
    if head is not None and not 0 <= head < model.cfg.n_heads:
        raise TvLensError(f"head {head} out of range: this model has heads 0..{model.cfg.n_heads - 1}")
    if value is None:
        return
    width, what = (model.cfg.d_head, "d_head") if head is not None else (model.cfg.d_model, "d_model")
    if value.ndim != 1 or value.shape[0] != width:
        raise TvLensError(f"intervention value of shape {tuple(value.shape)} does not fit this model's {what} "
                          f"{width}: it was learned on another model (or give a head for a per-head hook)")


def batch_hooks(
    interventions: Sequence[Sequence[Intervention]],
    real: Bool[Tensor, "batch pos"],
    query: Bool[Tensor, "batch pos"],
) -> list[hooks.HookPair]:
    """Hooks writing row r's interventions (in their order) into a left-padded batch whose real
    tokens are `real` and whose query tokens (real, less a leading BOS) are `query`.

    Edits are grouped into one hook per (order in the row, hook point, head, mode).
    """
    points: dict[tuple, list[tuple[int, int, Intervention]]] = defaultdict(list)
    last = real.shape[1] - 1
    for row, row_interventions in enumerate(interventions):
        for k, iv in enumerate(row_interventions):
            if iv.positions == "last":
                columns = [last]
            elif iv.positions == "all":
                columns = query[row].nonzero()[:, 0].tolist()
            else:
                own = real[row].nonzero()[:, 0].tolist()
                columns = list(dict.fromkeys(own[p] for p in iv.positions))  # 1 and -n may be one token
            points[(k, iv.name, iv.head, iv.mode)] += [(row, c, iv) for c in columns]
    pairs = []
    for (_, name, _, _), group in sorted(points.items(), key=lambda item: item[0][0]):
        first = group[0][2]
        # every intervention of a group has the group's mode, and one not scaling has a value (__post_init__)
        values = None if first.mode == "scale" else torch.stack(
            [iv.value for _, _, iv in group if iv.value is not None])
        strengths = torch.tensor([iv.strength for _, _, iv in group],
                                 dtype=values.dtype if values is not None else torch.float32)
        pairs.append(_edit(first, name, values, strengths[:, None], torch.tensor([c for _, c, _ in group]),
                           torch.tensor([row for row, _, _ in group])))
    return pairs


def _edit(iv: Intervention, name: str, value, strength, positions, rows) -> hooks.HookPair:
    """The hook of one mode (the one place where modes become edits)."""
    if iv.mode == "replace":
        return hooks.replacing(name, value, index=positions, rows=rows, head=iv.head)
    if iv.mode == "add":
        return hooks.adding(name, value * strength, index=positions, rows=rows, head=iv.head)
    return hooks.scaling(name, strength, index=positions, rows=rows, head=iv.head)


@contextmanager
def intervening(model: Model, interventions: Intervention | Sequence[Intervention]) -> Iterator[None]:
    """Within the `with` block, every forward pass of `model` in this thread runs with the interventions.

    The edits apply in order to every row: "last" edits the last position of each pass, "all" every real
    token after a leading BOS (read from the pass's tokens and attention mask, as the engine does),
    explicit positions those positions of each row. Forward passes of other threads on the same model run
    unedited; the hooks are removed when the block ends.

    Args:
        model: the model (a `TransformerBridge`).
        interventions: one `Intervention` or a list of them.

    Raises:
        TvLensError: an intervention the model cannot take: a layer, hook or head it lacks, or a value of
            another width.
    """
    interventions = [interventions] if isinstance(interventions, Intervention) else list(interventions)
    for iv in interventions:
        check_intervention(model, iv)
    seen: dict[str, Tensor] = {}
    pairs = [pair for iv in interventions for pair in iv.hook_pairs(lambda: seen["query"])]
    with _reading_query(model, seen, any(iv.positions == "all" for iv in interventions)), hooks.hooked(model, pairs):
        yield


@contextmanager
def _reading_query(model: Model, seen: dict[str, Tensor], needed: bool) -> Iterator[None]:
    """While needed, record the query positions (real tokens less a leading BOS) of each forward pass this
    thread runs in `seen`."""
    if not needed:
        yield
        return
    thread = threading.get_ident()

    def read(module, args, kwargs) -> None:
        if threading.get_ident() != thread:
            return
        tokens = args[0] if args else kwargs.get("input")
        if not isinstance(tokens, Tensor):
            tokens = model.to_tokens(tokens)
        mask = kwargs.get("attention_mask")
        mask = torch.ones_like(tokens) if mask is None else mask[:, -tokens.shape[1]:]
        seen["query"] = query_positions(model, tokens, mask)

    handle = model.register_forward_pre_hook(read, with_kwargs=True)
    try:
        yield
    finally:
        handle.remove()
