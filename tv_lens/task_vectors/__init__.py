"""Task vectors (Hendel et al. 2023): `TaskVector`, learn θ from demonstrations, apply it to bare queries, the layer
sweep, the main experiment per task, task-level θ, generation with θ, and serving stored vectors."""
