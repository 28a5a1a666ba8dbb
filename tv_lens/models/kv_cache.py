"""Work around a TransformerLens 4.3 / transformers 5.2x bug that leaves the key/value cache empty.

HF decoder layers pass the cache to attention as `cache=`, while TL's attention bridge reads only
`past_key_values`; without the workaround `generate()` and prefix reuse silently give wrong logits.
It is set on the attention modules of one model, never on TransformerLens's classes: for good on the models
tv_lens loads (`patch_kv_cache`), and for the engine's own forward passes on any other (`kv_cache_routed`),
so a bridge booted by the user keeps TransformerLens's behaviour outside them. `tests/test_models.py`
checks that the bug still exists upstream, so the workaround is dropped once fixed.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from types import MethodType
from weakref import WeakKeyDictionary

from transformer_lens.model_bridge.generalized_components.attention import AttentionBridge

from tv_lens.models.bridge import Model


def _update_kv_cache(self, k, v, **kwargs):
    if kwargs.get("past_key_values") is None and kwargs.get("cache") is not None:
        kwargs["past_key_values"] = kwargs["cache"]
    return type(self)._update_kv_cache(self, k, v, **kwargs)


_ATTENTION: WeakKeyDictionary = WeakKeyDictionary()


def _unrouted(model: Model) -> list[AttentionBridge]:
    """The attention bridges of `model` that do not route the cache yet (the modules are walked once per model:
    1.6 ms on gemma-3-270m's 1678, a pass of the engine in a generation step takes tens)."""
    attention = _ATTENTION.get(model)
    if attention is None:
        attention = _ATTENTION[model] = [m for m in model.modules() if isinstance(m, AttentionBridge)]
    return [m for m in attention if "_update_kv_cache" not in vars(m)]


def patch_kv_cache(model: Model) -> None:
    """Route HF's `cache=` argument to every attention bridge of `model` (this model only), for good."""
    for module in _unrouted(model):
        # an instance attribute over AttentionBridge's method, on this module only
        module._update_kv_cache = MethodType(_update_kv_cache, module)  # type: ignore[method-assign]


@contextmanager
def kv_cache_routed(model: Model) -> Iterator[None]:
    """Within the block, every attention bridge of `model` routes HF's `cache=`; afterwards those that did
    not before are as they were."""
    added = _unrouted(model)
    for module in added:
        # an instance attribute over AttentionBridge's method, on this module only
        module._update_kv_cache = MethodType(_update_kv_cache, module)  # type: ignore[method-assign]
    try:
        yield
    finally:
        for module in added:
            del module._update_kv_cache
