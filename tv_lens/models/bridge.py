"""`Model`, the type of every model tv_lens runs: a TransformerLens 4 `TransformerBridge` (in compatibility mode,
which the engine checks: `tv_lens.patching.guard`)."""

from transformer_lens.model_bridge import TransformerBridge as Model

__all__ = ["Model"]
