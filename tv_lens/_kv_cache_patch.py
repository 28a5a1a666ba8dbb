"""Work around a TransformerLens 4.3 / transformers 5.2x bug that leaves the key/value cache empty.

HF decoder layers pass the cache to attention as `cache=`, while TL's attention bridge reads only
`past_key_values`; without this patch `generate()` and prefix reuse silently give wrong logits.
`tests/test_models.py` checks that the bug still exists upstream, so the patch is dropped once fixed.
"""

from transformer_lens.model_bridge.generalized_components.attention import AttentionBridge

_original_update = AttentionBridge._update_kv_cache


def _update_kv_cache(self, k, v, **kwargs):
    if kwargs.get("past_key_values") is None and kwargs.get("cache") is not None:
        kwargs["past_key_values"] = kwargs["cache"]
    return _original_update(self, k, v, **kwargs)


def apply_kv_cache_patch() -> None:
    """Route HF's `cache=` argument to the attention bridge (idempotent)."""
    AttentionBridge._update_kv_cache = _update_kv_cache


def remove_kv_cache_patch() -> None:
    """Restore TransformerLens's own method (used by the test that watches for the upstream fix)."""
    AttentionBridge._update_kv_cache = _original_update
