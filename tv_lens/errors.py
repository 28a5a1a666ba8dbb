"""`TvLensError`: the base of every error tv_lens raises on bad input, so `except tv.TvLensError` catches them all.

It is a `ValueError`, as each of them was: code that caught `ValueError` keeps working. Each subclass lives beside
the code that raises it (a task file, a vector file, a results file, a model, a query, a claim).
"""


class TvLensError(ValueError):
    """Bad input to tv_lens: the message is one line that says what to do."""
