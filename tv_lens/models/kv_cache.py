"""Work around a TransformerLens 4.3 / transformers 5.2x bug that leaves the key/value cache empty.

HF decoder layers pass the cache to attention as `cache=`, while TL's attention bridge reads only
`past_key_values`; without this patch `generate()` and prefix reuse silently give wrong logits.
The patch is set on the attention modules of each model tv_lens loads, never on TransformerLens's
classes, so other bridges in the process keep TransformerLens's own behaviour. `tests/test_models.py`
checks that the bug still exists upstream, so the patch is dropped once fixed.
"""

from types import MethodType

from transformer_lens.model_bridge.generalized_components.attention import AttentionBridge


def _update_kv_cache(self, k, v, **kwargs):
    if kwargs.get("past_key_values") is None and kwargs.get("cache") is not None:
        kwargs["past_key_values"] = kwargs["cache"]
    return type(self)._update_kv_cache(self, k, v, **kwargs)


def patch_kv_cache(model) -> None:
    """Route HF's `cache=` argument to every attention bridge of `model` (this model only)."""
    for module in model.modules():
        if isinstance(module, AttentionBridge):
            module._update_kv_cache = MethodType(_update_kv_cache, module)
