"""tv_lens: task vectors of in-context learning on TransformerLens hooks."""
