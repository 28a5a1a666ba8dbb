"""Function vectors (Todd et al. 2024): the function-vector protocol's items (the queries ICL answers correctly),
causal mediation over attention heads (AIE) and the universal head set, and the function vector built from the
top heads' mean outputs."""
