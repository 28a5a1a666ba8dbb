"""`TvLensError`: the base of every error tv_lens raises on bad input, so `except tv.TvLensError` catches them all.

It is a `ValueError`, as most of them were: code that caught `ValueError` keeps working. The few that were another
builtin error still are: `TvLensTypeError` (here) is a `TypeError`, for an argument of the wrong kind;
`UnknownQueryError` (`tv_lens.tasks.task`) a `KeyError`, for a query that is not an input of the task;
`NaNActivationsError` (`tv_lens.patching.engine`) a `FloatingPointError`. Each subclass but `TvLensTypeError` lives
beside the code that raises it (a task file, a vector file, a results file, a model, a query, a claim).
tests/test_layout.py fails on a bare `raise ValueError/TypeError/KeyError` in the library outside its short
allow-list of internal ones (each caught inside tv_lens).
"""


class TvLensError(ValueError):
    """Bad input to tv_lens: the message is one line that says what to do.

    A `ValueError`; `except tv.TvLensError` catches every subclass. `TvLensTypeError`, an argument of the
    wrong kind, is a `TypeError` too, and `UnknownQueryError` (`tv_lens.tasks.task`), a query that is not an
    input of the task, a `KeyError` too. The others the reference names, each beside the code that raises it:
    `ModelLoadError` (`tv_lens.models.loading`), `UnsupportedModelError` (`tv_lens.patching.guard`),
    `NaNActivationsError` (`tv_lens.patching.engine`, a `FloatingPointError` too), `TaskFileError`
    (`tv_lens.tasks.loaders`), `PromptTextError` (`tv_lens.tasks.prompts`), `QueryTooLongError`
    (`tv_lens.task_vectors.queries`), `VectorFileError` (`tv_lens.task_vectors.vector`), `UnusableTask`
    (`tv_lens.function_vectors.items`), `ResultsError` (`tv_lens.codec`).
    """


class TvLensTypeError(TvLensError, TypeError):
    """An argument of the wrong kind (one string where a list of them goes, a tensor where a `TaskVector`
    goes, an unknown keyword): a `TvLensError` and a `TypeError`, so either `except` catches it."""
