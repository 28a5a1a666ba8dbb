"""The layer sweep: task-vector accuracy when θ is written at each layer in turn."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from jaxtyping import Float
from torch import Tensor

from tv_lens.errors import TvLensError
from tv_lens.models.bridge import Model
from tv_lens.patching.engine import Budget, Run, decode, encode, predict
from tv_lens.patching.guard import check_model
from tv_lens.patching.interventions import Intervention, Mode, Positions
from tv_lens.stats import Accuracy


def layer_sweep(
    model: Model,
    prompts: Sequence[str],
    thetas: Sequence[Float[Tensor, "n_layers d_model"]],
    correct: Callable[[int, str], bool],
    *,
    layers: Sequence[int] | None = None,
    mode: Mode = "replace",
    strength: float = 1.0,
    positions: Positions = "last",
    budget: Budget | None = None,
) -> tuple[list[Accuracy], list[list[str]]]:
    """The layer sweep: accuracy when each prompt's vector is written at each layer in turn.

    Prompt i runs once per layer L with `thetas[i][L]` written at `blocks.L.hook_resid_post`: by default
    the paper's patch (replace it at the last token); `mode="add"` with a `strength` sweeps a steering
    vector (e.g. a function vector repeated over layers). With last-token edits each prompt's unedited
    prefix runs once and per layer only its last position is recomputed through the key/value cache.

    Args:
        model: a `TransformerBridge` in compatibility mode (`load_model`).
        prompts: the prompts, as text (e.g. `fmt.zero_shot_prompt(item)` of dev items).
        thetas: one [n_layers, d_model] tensor per prompt (e.g. its own θ, or one task's θ for every prompt).
        correct: `correct(i, prediction)` says whether the decoded next token of prompt i is right.
        layers: the layers to sweep; default all.
        mode: "replace", "add" or "scale" (as in `apply`).
        strength: the multiple of the vector for "add", the factor for "scale".
        positions: "last", "all" or a tuple of token indices (as in `apply`).
        budget: tokens and rows per forward pass (`tv_lens.patching.engine.Budget`).

    Returns:
        The accuracy at each layer of `layers`, in order.
        The decoded predictions, `[prompt][index in layers]`.

    Raises:
        UnsupportedModelError: `model` is not a `TransformerBridge` in compatibility mode and eval mode.
    """
    check_model(model)
    layers = list(range(model.cfg.n_layers)) if layers is None else list(layers)
    groups = [[Run(tokens, (Intervention(layer, theta[layer], positions=positions, mode=mode, strength=strength),))
               for layer in layers]
              for tokens, theta in zip(encode(model, prompts), thetas)]
    outputs = predict(model, groups, budget=budget)
    predictions = [decode(model, [o.token for o in out]) for out in outputs]
    by_layer = [Accuracy.of(correct(i, preds[j]) for i, preds in enumerate(predictions))
                for j in range(len(layers))]
    return by_layer, predictions


def best_layer(accuracies: Sequence[float]) -> int:
    """The first layer with the highest accuracy (the paper's choice; ties go to the earlier layer)."""
    if not accuracies:
        raise TvLensError("best_layer needs the accuracy of at least one layer")
    return max(range(len(accuracies)), key=lambda layer: (accuracies[layer], -layer))
