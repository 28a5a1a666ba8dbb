"""The run store: one folder per analysis in a run directory, typed records, per-unit claims for parallel workers."""
