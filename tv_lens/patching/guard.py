"""What the engine makes sure of for any model it is handed, whether `load_model` made it or the user booted it.

The model must be a TransformerLens `TransformerBridge` in compatibility mode (tv_lens's hook names and
numbers) and in eval mode (no dropout), else a one-line refusal says the fix; nothing is changed on the
user's object to make it so. During each of the engine's forward passes the bridge routes its key/value
cache (`tv_lens.models.kv_cache`, on which shared-prefix reuse and generation rely) and is held by a lock
of its own: hooks live on the model's shared hook points, so passes from two Python threads run one after
the other on one model (and in parallel on different models).
"""

from __future__ import annotations

import inspect
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from weakref import WeakKeyDictionary

from tv_lens.errors import TvLensError
from tv_lens.models.kv_cache import kv_cache_routed


class UnsupportedModelError(TvLensError):
    """A model the engine cannot run faithfully as it is; the message says what to do."""


def check_model(model) -> None:
    """Refuse, in one line that says the fix, a model that is not a TransformerBridge in compatibility mode
    and eval mode."""
    from transformer_lens.model_bridge import TransformerBridge
    from transformers import PreTrainedModel

    if not isinstance(model, TransformerBridge):
        if isinstance(model, PreTrainedModel):
            fix = "wrap it first: model = tv.load_model(hf_model, tokenizer=tokenizer)"
        else:
            fix = ("load one with tv.load_model(...), or boot one with TransformerBridge.boot_transformers(...) "
                   "and call its enable_compatibility_mode()")
        raise UnsupportedModelError(f"tv_lens runs TransformerLens TransformerBridge models, not a "
                                    f"{type(model).__name__}: {fix}")
    if not getattr(model, "compatibility_mode", False):
        raise UnsupportedModelError("this TransformerBridge is not in compatibility mode, whose hook names and "
                                    "numbers tv_lens relies on: call model.enable_compatibility_mode() first")
    if model.training:
        raise UnsupportedModelError("the model is in training mode, where dropout makes results random: "
                                    "call model.eval() first")
    model_type = getattr(_config(model), "model_type", None)
    if model_type in BROKEN_BY_PROCESSING:
        raise UnsupportedModelError(f"compatibility mode's weight processing (TransformerLens's fold_ln) changes the "
                                    f"outputs of this {model_type} model, so tv_lens's numbers would be wrong: use "
                                    f"another architecture (the documentation's models page lists those checked)")


# architectures whose outputs compatibility mode's weight processing changes (tests/model_matrix.py shows it)
BROKEN_BY_PROCESSING = frozenset({"qwen2_moe"})


def _config(model):
    """The wrapped Hugging Face model's config (None for another kind of model)."""
    return getattr(getattr(model, "original_model", None), "config", None)


def reuses_prefixes(model) -> bool:
    """Whether a shared prefix may run once for its group through the key/value cache: not for GPT-Neo's
    local attention, which gives other activations to suffixes left-padded after a cached prefix."""
    return "local" not in getattr(_config(model), "attention_layers", ())


def cache_keyword(model) -> str:
    """The name the wrapped Hugging Face model takes a key/value cache by (transformers 5.2x renamed
    `past_key_values` to `cache`; the old name now warns on every call)."""
    forward = getattr(getattr(model, "original_model", None), "forward", None)
    return "cache" if forward is not None and "cache" in inspect.signature(forward).parameters else "past_key_values"


_LOCKS: WeakKeyDictionary = WeakKeyDictionary()
_LOCKS_LOCK = threading.Lock()


def model_lock(model) -> threading.RLock:
    """The lock that makes the engine's forward passes on `model` one at a time (one per model, kept as long
    as the model)."""
    with _LOCKS_LOCK:
        lock = _LOCKS.get(model)
        if lock is None:
            lock = _LOCKS[model] = threading.RLock()
        return lock


@contextmanager
def running(model) -> Iterator[None]:
    """Check `model` and hold it for one forward pass of the engine: its lock, and its key/value cache routed."""
    check_model(model)
    with model_lock(model), kv_cache_routed(model):
        yield
