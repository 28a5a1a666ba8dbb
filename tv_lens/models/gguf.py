"""Read a GGUF file fast, into the same Hugging Face config, float32 model and tokenizer that transformers
makes of it.

transformers reads a GGUF's metadata with gguf's `GGUFReader`, which builds a numpy view of each element of
every array: for gemma-3-270m's 262,144-token vocabulary (tokens, scores, token types) that is about 20 s
of CPU per read, and a first load read it three times (config, tokenizer, weights). Here the metadata and
the tensor table are read once with `struct` and numpy; tensors are de-quantized by gguf's `dequantize`
and renamed and transformed by transformers' own GGUF tensor processors, as transformers does, so the
weights are the same bit for bit (tests/test_gguf_file.py compares them with transformers' on tiny GGUF
files). The config is derived from the metadata here for the architectures of the embedded models
(`FAST_CONFIGS`), checked against transformers' in the same tests; other architectures get transformers'
(slower) config.
"""

from __future__ import annotations

import mmap
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np

STRING, ARRAY = 8, 9
SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
PLAIN_TENSORS = {0: np.float32, 1: np.float16, 24: np.int8, 25: np.int16, 26: np.int32, 27: np.int64, 28: np.float64}
FAST_CONFIGS = ("gemma3", "llama")  # architectures whose transformers config is derived here


@dataclass
class GGUFFile:
    """A GGUF file's metadata (values as Python scalars, strings and lists) and its tensors, each as the
    raw array `gguf.dequantize` takes (quantized ones as uint8 blocks, in file order) and its ggml type."""

    path: Path
    metadata: dict[str, object]
    tensors: dict[str, tuple[np.ndarray, int]]

    @property
    def architecture(self) -> str:
        return str(self.metadata["general.architecture"])


def read_gguf(path: str | Path) -> GGUFFile:
    """The metadata and tensor table of the GGUF file at `path`; tensor data stay memory-mapped."""
    from gguf import GGML_QUANT_SIZES, quant_shape_to_byte_shape

    with open(path, "rb") as f:
        blob = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    cursor = _Cursor(blob)
    magic, version = blob[:4], cursor.scalar(4, at=4)
    if magic != b"GGUF" or version not in (2, 3):
        raise ValueError(f"{path} is not a little-endian GGUF file of version 2 or 3")
    n_tensors, n_values = cursor.scalar(10), cursor.scalar(10)
    metadata = {}
    for _ in range(n_values):
        key = cursor.string()
        metadata[key] = cursor.value(cursor.scalar(4))
    table = []
    for _ in range(n_tensors):
        name = cursor.string()
        dims = [cursor.scalar(10) for _ in range(cursor.scalar(4))]
        table.append((name, dims, cursor.scalar(4), cursor.scalar(10)))
    alignment = int(metadata.get("general.alignment", 32))
    start = -(-cursor.pos // alignment) * alignment
    tensors = {}
    for name, dims, kind, offset in table:
        shape = tuple(reversed(dims))
        if kind in PLAIN_TENSORS:
            data = np.frombuffer(blob, PLAIN_TENSORS[kind], int(np.prod(dims)), start + offset).reshape(shape)
        else:
            block, size = GGML_QUANT_SIZES[kind]
            count = int(np.prod(dims)) // block * size
            data = np.frombuffer(blob, np.uint8, count, start + offset).reshape(quant_shape_to_byte_shape(shape, kind))
        tensors[name] = data, kind
    return GGUFFile(Path(path), metadata, tensors)


class _Cursor:
    """Reads GGUF values one after another from a buffer."""

    def __init__(self, blob: mmap.mmap):
        self.blob, self.pos = blob, 8

    def scalar(self, kind: int, at: int | None = None):
        fmt = SCALARS[kind]
        (value,) = struct.unpack_from(fmt, self.blob, self.pos if at is None else at)
        if at is None:
            self.pos += struct.calcsize(fmt)
        return value

    def string(self) -> str:
        n = self.scalar(10)
        self.pos += n
        return self.blob[self.pos - n:self.pos].decode("utf-8")

    def value(self, kind: int):
        if kind == STRING:
            return self.string()
        if kind != ARRAY:
            return self.scalar(kind)
        item, count = self.scalar(4), self.scalar(10)
        if item in SCALARS:
            values = np.frombuffer(self.blob, SCALARS[item], count, self.pos)
            self.pos += values.nbytes
            return values.tolist()
        return [self.value(item) for _ in range(count)]


def hf_config(gguf: GGUFFile):
    """The transformers config of the model in `gguf`, as transformers reads it from the file."""
    from transformers import AutoConfig

    metadata = gguf.metadata
    if gguf.architecture in FAST_CONFIGS and metadata.get("general.name") != "mistral":  # transformers renames it
        from transformers.integrations.ggml import GGUF_CONFIG_MAPPING

        # {section: {gguf field: config name, or None or -1 (by transformers version) for a field it drops}}; a
        # literal that mypy infers as dict[str, object]
        mapping = cast(dict[str, dict[str, str | int | None]], GGUF_CONFIG_MAPPING)
        settings: dict[str, Any] = {"tie_word_embeddings": "output.weight" not in gguf.tensors}
        for key, value in metadata.items():
            prefix, _, field = key.partition(".")
            name = mapping.get(prefix, {}).get(field)
            if isinstance(name, str):
                settings[name] = value[0] if isinstance(value, list) and len(value) == 1 else value
        if settings["model_type"] == "gemma3":
            settings["model_type"] = "gemma3_text"  # the file holds the text model only
        tokens = metadata.get("tokenizer.ggml.tokens")
        if "vocab_size" not in settings and isinstance(tokens, list):
            settings["vocab_size"] = len(tokens)
    else:
        settings = AutoConfig.from_pretrained(str(gguf.path.parent), gguf_file=gguf.path.name).to_dict()
    settings.pop("_model_name_or_path", None)  # the file's model name, not a path
    return AutoConfig.for_model(**settings)


def hf_model(gguf: GGUFFile, config):
    """The float32 transformers model of `gguf` under `config`: each tensor de-quantized by gguf, then renamed
    and transformed (Gemma's norms stored as w + 1, Llama's permuted q/k rows) by transformers' GGUF tensor
    processor of the architecture, and loaded as transformers loads a GGUF's tensors."""
    import torch
    from gguf import GGMLQuantizationType, dequantize
    from transformers import AutoModelForCausalLM
    from transformers.modeling_gguf_pytorch_utils import TENSOR_PROCESSORS, TensorProcessor, get_gguf_hf_weights_map

    settings = config.to_dict()
    processor = TENSOR_PROCESSORS.get(gguf.architecture, TensorProcessor)(config=settings)
    with torch.device("meta"):
        skeleton = AutoModelForCausalLM.from_config(config)
    names = get_gguf_hf_weights_map(skeleton, processor)
    parsed: dict[str, dict] = {"config": settings, "tensors": {}}  # processors of some architectures add to it
    for name, (data, kind) in gguf.tensors.items():
        result = processor.process(weights=dequantize(data, GGMLQuantizationType(kind)), name=name,
                                   tensor_key_mapping=names, parsed_parameters=parsed)
        if result.name in names:
            parsed["tensors"][names[result.name]] = torch.from_numpy(np.copy(result.weights))
    return type(skeleton).from_pretrained(None, config=config, state_dict=parsed["tensors"], dtype=torch.float32)


def hf_tokenizer(gguf: GGUFFile, config):
    """The tokenizer transformers builds from `gguf`'s vocabulary. For the architectures of `FAST_CONFIGS` its
    class is named by the config's model type (transformers would read the config from the file again)."""
    from transformers import AutoTokenizer
    from transformers.models.auto.tokenization_auto import TOKENIZER_MAPPING_NAMES

    named = gguf.architecture in FAST_CONFIGS and TOKENIZER_MAPPING_NAMES.get(config.model_type)
    return AutoTokenizer.from_pretrained(str(gguf.path.parent), gguf_file=gguf.path.name,
                                         **({"tokenizer_type": config.model_type} if named else {}))
