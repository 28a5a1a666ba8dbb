"""Models: load any TransformerLens bridge, Hugging Face directory or GGUF (`load_model`), the embedded models and their
processed-weight cache, tiny random models for tests, weight fingerprints, and the key/value-cache workaround."""
