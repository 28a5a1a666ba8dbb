"""The paper's experiments, one module each: runnable alone (`python -m analyses.<name>`), composed
by `analyses.reproduce`, each writing a versioned results file into a run directory. Installed as
`tv_lens_analyses` (see `analyses/cli.py`)."""
