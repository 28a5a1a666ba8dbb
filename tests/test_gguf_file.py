"""tv_lens.models.gguf reads a GGUF as gguf's reader does and gives the config, weights and tokenizer that
transformers makes of it, bit for bit: on tiny GGUF files written here (Llama: q/k rows permuted by
transformers' processor; Gemma 3: norms stored as w + 1, embedding tied) and, marked slow, on the
embedded gemma-3-270m."""

import gguf
import numpy as np
import pytest
import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
from transformers.modeling_gguf_pytorch_utils import TENSOR_PROCESSORS, get_gguf_hf_weights_map

from tv_lens.models import gguf as gguf_file
from tv_lens.models.gguf import hf_config, hf_model, hf_tokenizer, read_gguf
from tv_lens.models.loading import EMBEDDED
from tv_lens.models.tiny import tiny_hf_model

ARCHITECTURES = {"tiny-llama": "llama", "tiny-gemma": "gemma3"}


def write_gguf(path, kind: str):
    """A tiny random model as a GGUF file: its matrices in Q8_0 blocks, the rest in float32, with the
    tokenizer's vocabulary; a tied unembedding is left out, as llama.cpp does."""
    hf, tokenizer = tiny_hf_model(kind)
    config, arch = hf.config, ARCHITECTURES[kind]
    writer = gguf.GGUFWriter(str(path), arch)
    writer.add_name(f"{kind} test")
    writer.add_block_count(config.num_hidden_layers)
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(config.num_attention_heads)
    writer.add_head_count_kv(config.num_key_value_heads)
    writer.add_layer_norm_rms_eps(config.rms_norm_eps)
    writer.add_rope_freq_base(10000.0)
    writer.add_vocab_size(config.vocab_size)
    if arch == "gemma3":
        writer.add_key_length(config.head_dim)
        writer.add_sliding_window(config.sliding_window)
    vocabulary = sorted(tokenizer.get_vocab(), key=tokenizer.get_vocab().get)
    writer.add_tokenizer_model("llama")
    writer.add_token_list(vocabulary)
    writer.add_token_scores([-float(i) for i in range(len(vocabulary))])
    weights = hf.state_dict()
    for gguf_name, hf_name in get_gguf_hf_weights_map(hf, TENSOR_PROCESSORS[arch]()).items():
        if hf_name not in weights or (hf_name == "lm_head.weight" and config.tie_word_embeddings):
            continue
        values = weights[hf_name].numpy()
        if values.ndim == 2:
            writer.add_tensor(gguf_name, gguf.quants.quantize(values, gguf.GGMLQuantizationType.Q8_0),
                              raw_dtype=gguf.GGMLQuantizationType.Q8_0)
        else:
            writer.add_tensor(gguf_name, values)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


@pytest.fixture(scope="module", params=sorted(ARCHITECTURES))
def tiny_gguf(request, tmp_path_factory):
    return write_gguf(tmp_path_factory.mktemp("gguf") / f"{request.param}.gguf", request.param)


def test_metadata_and_tensors_are_those_ggufs_reader_finds(tiny_gguf):
    ours, theirs = read_gguf(tiny_gguf), gguf.GGUFReader(tiny_gguf)
    fields = {name: field.contents() for name, field in theirs.fields.items() if not name.startswith("GGUF.")}
    assert ours.metadata == fields and len(ours.metadata["tokenizer.ggml.tokens"]) > 90
    assert list(ours.tensors) == [t.name for t in theirs.tensors]
    for tensor in theirs.tensors:
        data, kind = ours.tensors[tensor.name]
        assert kind == tensor.tensor_type and data.dtype == tensor.data.dtype
        assert np.array_equal(data, tensor.data)


def without_paths(settings: dict) -> dict:
    """A config's settings less where it was read from (never saved with it)."""
    return {k: v for k, v in settings.items() if k not in ("_name_or_path", "_model_name_or_path")}


def transformers_config(path) -> dict:
    return without_paths(AutoConfig.from_pretrained(str(path.parent), gguf_file=path.name).to_dict())


@pytest.mark.parametrize("derived", [True, False])  # False: as for an architecture tv_lens does not derive
def test_config_and_weights_are_those_transformers_makes(tiny_gguf, derived, monkeypatch):
    if not derived:
        monkeypatch.setattr(gguf_file, "FAST_CONFIGS", ())
    contents = read_gguf(tiny_gguf)
    config = hf_config(contents)
    assert without_paths(config.to_dict()) == transformers_config(tiny_gguf)
    ours = hf_model(contents, config).state_dict()
    theirs = AutoModelForCausalLM.from_pretrained(str(tiny_gguf.parent), gguf_file=tiny_gguf.name,
                                                  dtype=torch.float32).state_dict()
    assert list(ours) == list(theirs)
    assert all(torch.equal(ours[name], theirs[name]) for name in ours)


def test_a_file_that_is_not_a_gguf_is_refused(tmp_path):
    bad = tmp_path / "x.gguf"
    bad.write_bytes(b"GGUF" + b"\x00" * 64)
    with pytest.raises(ValueError, match="not a little-endian GGUF file"):
        read_gguf(bad)


@pytest.mark.slow
def test_the_embedded_models_config_and_tokenizer_are_those_transformers_makes():
    path = EMBEDDED["gemma-3-270m"].gguf_path()
    contents = read_gguf(path)
    config = hf_config(contents)
    assert without_paths(config.to_dict()) == transformers_config(path)
    ours = hf_tokenizer(contents, config)
    theirs = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    assert type(ours) is type(theirs)
    assert ours.backend_tokenizer.to_str() == theirs.backend_tokenizer.to_str()


def test_loading_a_gguf_draws_no_bar_and_prints_nothing(tiny_gguf, tmp_path, monkeypatch, capfd):
    from tv_lens.models.loading import load_model

    monkeypatch.setenv("TV_LENS_CACHE", str(tmp_path))
    capfd.readouterr()
    model = load_model(str(tiny_gguf))
    assert capfd.readouterr() == ("", "")  # no de-quantization or "Loading weights" bar
    assert model.cfg.n_layers == 3 and model.compatibility_mode
