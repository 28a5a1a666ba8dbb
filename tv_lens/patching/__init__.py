"""Patching: the engine that runs every forward pass of tv_lens (batched, padding-correct, prefix reuse), the
`Intervention` that says where a vector is written, generic hooks for any
TransformerLens hooked module, and per-head outputs."""
