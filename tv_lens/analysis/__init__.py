"""Analyses of vectors: the unembedding lens (top tokens), geometry (clusters, t-SNE) and means over tasks."""
