"""Function vectors (Todd et al. 2024): the function-vector protocol's items, causal mediation over attention heads
(AIE), and the function vector built from the top heads' mean outputs."""
