"""Each head's contribution to the residual stream (tv_lens.patching.heads) against the model's own sums."""

import pytest
import torch

from tv_lens.patching import heads
from tv_lens.patching.interventions import HOOK_Z

PROMPTS = ["Q: hot\nA: cold\n\nQ: up\nA:", "Q: big\nA:"]


@pytest.fixture(scope="module")
def cached(tiny, one_thread):
    tokens = tiny.to_tokens(PROMPTS, padding_side="left")
    _, cache = tiny.run_with_cache(tokens, attention_mask=(tokens != tiny.tokenizer.pad_token_id).long())
    return tiny, cache


def test_contributions_and_bias_sum_to_the_pre_norm_attention_output(cached):
    model, cache = cached
    for layer in range(model.cfg.n_layers):
        z = cache[HOOK_Z.format(layer=layer)]
        total = heads.head_contributions(model, layer, z).sum(-2) + heads.attention_bias(model, layer)
        expected = cache[heads.PRE_NORM_HOOK.format(layer=layer)]
        assert torch.allclose(total, expected, atol=1e-5, rtol=1e-4), layer


def test_residual_shares_sum_to_what_the_attention_block_adds(cached):
    model, cache = cached
    for layer in range(model.cfg.n_layers):
        z = cache[HOOK_Z.format(layer=layer)]
        pre = cache[heads.PRE_NORM_HOOK.format(layer=layer)]
        name = heads.NORM_SCALE_HOOK.format(layer=layer)
        scale = cache[name][..., 0] if name in cache else torch.ones(pre.shape[:-1])
        shares = heads.to_residual(model, layer, heads.head_contributions(model, layer, z), scale[..., None])
        bias = heads.to_residual(model, layer, heads.attention_bias(model, layer), scale)
        expected = cache[heads.ATTN_OUT_HOOK.format(layer=layer)]
        assert torch.allclose(shares.sum(-2) + bias, expected, atol=1e-4, rtol=1e-4), layer
        resid = cache[f"blocks.{layer}.hook_resid_mid"] - cache[f"blocks.{layer}.hook_resid_pre"]
        assert torch.allclose(shares.sum(-2) + bias, resid, atol=1e-4, rtol=1e-4), layer


def test_only_gemma_style_models_have_a_post_attention_norm(tiny_llama, tiny_gemma):
    assert heads.has_post_attention_norm(tiny_gemma)
    assert not heads.has_post_attention_norm(tiny_llama)


def test_a_share_differs_from_the_raw_contribution_under_a_post_attention_norm(cached):
    model, cache = cached
    z = cache[HOOK_Z.format(layer=1)][0, -1]
    contributions = heads.head_contributions(model, 1, z)
    shares = heads.to_residual(model, 1, contributions, torch.tensor(0.05))
    same = torch.allclose(shares, contributions)
    assert same != heads.has_post_attention_norm(model)
