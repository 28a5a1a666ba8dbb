"""`TvLensError`: the base of every error tv_lens raises on bad input, so `except tv.TvLensError` catches them all.

It is a `ValueError`, as each of them was: code that caught `ValueError` keeps working. Each subclass lives beside
the code that raises it (a task file, a vector file, a results file, a model, a query, a claim).
"""


class TvLensError(ValueError):
    """Bad input to tv_lens: the message is one line that says what to do.

    A `ValueError`; `except tv.TvLensError` catches every subclass. Those the reference names, each beside
    the code that raises it: `ModelLoadError` (`tv_lens.models.loading`), `UnsupportedModelError`
    (`tv_lens.patching.guard`), `TaskFileError` (`tv_lens.tasks.loaders`), `PromptTextError`
    (`tv_lens.tasks.prompts`), `QueryTooLongError` (`tv_lens.task_vectors.queries`), `VectorFileError`
    (`tv_lens.task_vectors.vector`), `UnusableTask` (`tv_lens.function_vectors.items`), `ResultsError`
    (`tv_lens.codec`).
    """
