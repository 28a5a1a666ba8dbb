"""tv_lens: task vectors of in-context learning (Hendel, Geva, Globerson 2023) on TransformerLens hooks.

    Output = Apply(query, Learn(examples))

`tv_lens.__all__` is the public surface, documented in the API reference. `import tv_lens` is instant: each
name is imported from its subpackage on first use (PEP 562 `__getattr__`), so `tv-lens --help` never loads torch.
The subpackages, from the bottom up: `models`, `patching`, `tasks`; `task_vectors`, `function_vectors`,
`analysis`; `runs`, `report`; `cli`. `tv.hooks` is `tv_lens.patching.hooks`, `tv.plots` is `tv_lens.report.plots`.
Importing or calling tv_lens changes no environment variable and no global torch setting (threads, default dtype,
grad mode); `tv.set_threads("auto")` or `tv.set_threads(n)` changes torch's threads when asked.
"""

from __future__ import annotations

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("tv-lens")
except PackageNotFoundError:  # a checkout on sys.path without `pip install -e .`
    __version__ = "0+unknown"

# public name -> the module that defines it
_EXPORTS = {
    "Accuracy": "tv_lens.stats",
    "TvLensError": "tv_lens.errors",
    "EvalResult": "tv_lens.task_vectors.evaluation",
    "HeadEffects": "tv_lens.function_vectors.mediation",
    "FunctionVector": "tv_lens.task_vectors.vector",
    "Intervention": "tv_lens.patching.interventions",
    "PromptFormat": "tv_lens.tasks.prompts",
    "Settings": "tv_lens.settings",
    "Task": "tv_lens.tasks",
    "TaskVector": "tv_lens.task_vectors.vector",
    "TaskVectorSolver": "tv_lens.task_vectors.serving",
    "UniversalHeads": "tv_lens.function_vectors.mediation",
    "apply": "tv_lens.task_vectors.applying",
    "evaluate": "tv_lens.task_vectors.evaluation",
    "fingerprint": "tv_lens.models.provenance",
    "function_vector": "tv_lens.function_vectors.vector",
    "generate": "tv_lens.task_vectors.generation",
    "get_task": "tv_lens.tasks",
    "head_effects": "tv_lens.function_vectors.mediation",
    "intervening": "tv_lens.patching.interventions",
    "layer_sweep": "tv_lens.task_vectors.sweep",
    "learn": "tv_lens.task_vectors.learning",
    "learn_task": "tv_lens.task_vectors.task_level",
    "list_tasks": "tv_lens.tasks",
    "load_model": "tv_lens.models.loading",
    "load_task": "tv_lens.tasks",
    "load_tokenizer": "tv_lens.models.loading",
    "register_task": "tv_lens.tasks",
    "sample_splits": "tv_lens.tasks",
    "score_generation": "tv_lens.task_vectors.generation",
    "set_threads": "tv_lens.threads",
    "top_tokens": "tv_lens.analysis.lens",
    "universal_heads": "tv_lens.function_vectors.mediation",
}
# public modules under a short name
_SUBMODULES = {"hooks": "tv_lens.patching.hooks", "plots": "tv_lens.report.plots"}

__all__ = sorted([*_EXPORTS, *_SUBMODULES, "__version__"])


def __getattr__(name: str):
    if name in _SUBMODULES:
        return import_module(_SUBMODULES[name])
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(_EXPORTS[name]), name)


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})

