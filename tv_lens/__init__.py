"""tv_lens: task vectors of in-context learning (Hendel, Geva, Globerson 2023) on TransformerLens hooks.

    Output = Apply(query, Learn(examples))

`import tv_lens` is instant: each name below is imported on first use (PEP 562 `__getattr__`), so a
`tv-lens --help` never loads torch, and plotly loads only with `tv_lens.plots`. Torch's CPU threads
follow the cores other processes leave free (`tv_lens.threads`).
"""

from __future__ import annotations

import sys
from importlib import import_module
from types import ModuleType

from tv_lens.threads import set_thread_default

set_thread_default()  # before anything imports torch: OpenMP reads its wait policy once, when torch loads it

# public name -> the module that defines it
_EXPORTS = {
    "Accuracy": "tv_lens.stats",
    "EvalResult": "tv_lens.evaluate",
    "HeadEffects": "tv_lens.mediation",
    "Intervention": "tv_lens.interventions",
    "PromptFormat": "tv_lens.prompts",
    "Settings": "tv_lens.settings",
    "Task": "tv_lens.tasks",
    "TaskVector": "tv_lens.vectors",
    "TaskVectorSolver": "tv_lens.serving",
    "apply": "tv_lens.apply",
    "evaluate": "tv_lens.evaluate",
    "fingerprint": "tv_lens.provenance",
    "function_vector": "tv_lens.function_vectors",
    "generate": "tv_lens.generate",
    "get_task": "tv_lens.tasks",
    "head_effects": "tv_lens.mediation",
    "intervening": "tv_lens.interventions",
    "layer_sweep": "tv_lens.sweep",
    "learn": "tv_lens.learn",
    "learn_task": "tv_lens.task_level",
    "list_tasks": "tv_lens.tasks",
    "load_model": "tv_lens.models",
    "load_task": "tv_lens.tasks",
    "load_tokenizer": "tv_lens.models",
    "register_task": "tv_lens.tasks",
    "sample_splits": "tv_lens.tasks",
    "score_generation": "tv_lens.generate",
    "set_threads": "tv_lens.threads",
    "top_tokens": "tv_lens.lens",
}
_SUBMODULES = ("hooks", "plots")

__all__ = sorted([*_EXPORTS, *_SUBMODULES])


def __getattr__(name: str):
    if name in _SUBMODULES:
        return import_module(f"{__name__}.{name}")
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(_EXPORTS[name]), name)


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


class _Package(ModuleType):
    """`tv_lens.apply`, `.learn`, `.evaluate` and `.generate` name both a module and its function: the
    package attribute stays the function even after the module is imported (import would set it)."""

    def __setattr__(self, name: str, value) -> None:
        if isinstance(value, ModuleType) and name in _EXPORTS:
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
