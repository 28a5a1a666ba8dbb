"""The paper's experiments, one module each: runnable alone (`python -m analyses.<name>`), composed
by `analyses.reproduce`, each writing a versioned results file into a run directory. Installed as
`tv_lens_analyses`; `analyses/commands.py` adds `reproduce` and `figures` to `tv-lens`."""

EXPERIMENTS = ("main_table", "layer_sweep", "conflicting_tasks", "top_tokens", "clusters", "function_vectors",
               "composition")
