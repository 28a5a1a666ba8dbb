"""Tiny random-weight models (Llama-like, Gemma-like, GPT-2-like) with a character tokenizer: no download, booted in
well under a second, so unit tests exercise the real `TransformerBridge` code paths."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from tv_lens.errors import TvLensError

if TYPE_CHECKING:
    from transformers import PreTrainedModel

TINY_MODELS = ("tiny-llama", "tiny-gemma", "tiny-gpt2")


def char_tokenizer():
    """One token per printable ASCII character, plus `<s>` (BOS), `</s>`, `<pad>` and `<unk>`."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    specials = ["<unk>", "<s>", "</s>", "<pad>"]
    chars = [chr(i) for i in range(32, 127)] + ["\n"]
    vocab = {t: i for i, t in enumerate(specials + chars)}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Split(pattern="", behavior="isolated")
    backend.decoder = decoders.Fuse()
    # boot() needs name_or_path, and re-loads (from the hub) any tokenizer without add_bos_token.
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
        unk_token="<unk>", add_bos_token=True, name_or_path="char-tokenizer",
    )


def tiny_hf_model(kind: str = "tiny-llama", seed: int = 0, n_layers: int = 3, tokenizer=None):
    """The random-weight Hugging Face model (float32, CPU, eval mode) behind a tiny model, and its tokenizer
    (`tokenizer`, default `char_tokenizer()`; another needs BOS, EOS and pad tokens)."""
    if kind not in TINY_MODELS:
        raise TvLensError(f"unknown tiny model {kind!r}: choose one of {', '.join(TINY_MODELS)}")
    tokenizer = tokenizer or char_tokenizer()
    common = dict(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=n_layers,
        num_attention_heads=4, max_position_embeddings=512, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    hf: PreTrainedModel
    if kind == "tiny-llama":
        from transformers import LlamaConfig, LlamaForCausalLM

        # wider initial weights than HF's 0.02: the model's answers then vary with the prompt and
        # with a patch, so tests that compare answers can fail
        hf = LlamaForCausalLM(LlamaConfig(num_key_value_heads=2, initializer_range=0.2, **common))
    elif kind == "tiny-gpt2":  # LayerNorm, learned positions, tied embedding: compatibility mode centres weights
        from transformers import GPT2Config, GPT2LMHeadModel

        hf = GPT2LMHeadModel(GPT2Config(
            vocab_size=common["vocab_size"], n_embd=64, n_inner=128, n_layer=n_layers, n_head=4,
            n_positions=512, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id, initializer_range=0.2,
        ))
    else:
        from transformers import Gemma3ForCausalLM, Gemma3TextConfig

        config = Gemma3TextConfig(
            num_key_value_heads=1, head_dim=16, sliding_window=128, query_pre_attn_scalar=16,
            layer_types=["sliding_attention"] * (n_layers - 1) + ["full_attention"], **common,
        )
        hf = Gemma3ForCausalLM(config)
    hf.config.architectures = [type(hf).__name__]
    return hf.eval(), tokenizer


@torch.no_grad()
def tiny_model(kind: str = "tiny-llama", seed: int = 0, n_layers: int = 3, compat: bool = True,
               device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32, tokenizer=None):
    """A random-weight `TransformerBridge` of the given kind (one of `TINY_MODELS`) on `device`
    in `dtype` (the same weights on every device: they are drawn on the CPU in float32), reading
    with `tokenizer` (default: `char_tokenizer()`; another needs BOS, EOS and pad tokens)."""
    from transformer_lens.model_bridge import TransformerBridge

    from tv_lens.models.kv_cache import patch_kv_cache
    from tv_lens.models.provenance import remember

    hf, tokenizer = tiny_hf_model(kind, seed, n_layers, tokenizer)
    hf.to(dtype)
    bridge = TransformerBridge.boot_transformers(kind, hf_model=hf, tokenizer=tokenizer)
    bridge.eval()
    if compat:
        bridge.enable_compatibility_mode(disable_warnings=True)
    patch_kv_cache(bridge)
    remember(bridge, kind)
    return bridge.to(device, print_details=False)  # also sets cfg.device, which otherwise names CUDA if any
