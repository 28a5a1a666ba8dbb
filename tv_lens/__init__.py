"""tv_lens: task vectors of in-context learning (Hendel, Geva, Globerson 2023) on TransformerLens hooks.

    Output = Apply(query, Learn(examples))
"""

from tv_lens import hooks, plots
from tv_lens.apply import apply
from tv_lens.evaluate import EvalResult, evaluate
from tv_lens.generate import generate, score_generation
from tv_lens.learn import learn
from tv_lens.lens import top_tokens
from tv_lens.models import fingerprint, load_model, load_tokenizer
from tv_lens.prompts import PromptFormat
from tv_lens.serving import TaskVectorSolver
from tv_lens.stats import Accuracy
from tv_lens.sweep import layer_sweep
from tv_lens.task_level import learn_task
from tv_lens.tasks import Task, get_task, list_tasks, load_task, register_task, sample_splits
from tv_lens.vectors import TaskVector

__all__ = [
    "Accuracy",
    "EvalResult",
    "PromptFormat",
    "Task",
    "TaskVector",
    "TaskVectorSolver",
    "apply",
    "evaluate",
    "fingerprint",
    "generate",
    "get_task",
    "hooks",
    "layer_sweep",
    "learn",
    "learn_task",
    "list_tasks",
    "load_model",
    "load_task",
    "load_tokenizer",
    "plots",
    "register_task",
    "sample_splits",
    "score_generation",
    "top_tokens",
]
