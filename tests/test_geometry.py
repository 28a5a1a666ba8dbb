"""Clustering numbers on vectors with a known answer."""

import pytest
import torch

from tv_lens.analysis.geometry import (
    cluster_stats,
    cosine_distances,
    nearest_centroid_accuracy,
    tsne_2d,
    within_between,
)


def blobs(n_per: int = 10, spread: float = 0.05, seed: int = 0):
    """Three tasks pointing along three axes, with a little noise."""
    g = torch.Generator().manual_seed(seed)
    vectors, labels = [], []
    for t, name in enumerate(["a", "b", "c"]):
        centre = torch.zeros(8)
        centre[t] = 1.0
        vectors.append(centre + spread * torch.randn(n_per, 8, generator=g))
        labels += [name] * n_per
    return torch.cat(vectors), labels


def test_separated_tasks_cluster():
    stats = cluster_stats(*blobs())
    assert stats.n_vectors == 30 and stats.n_tasks == 3
    assert stats.within < 0.05 < 0.9 < stats.between
    assert stats.silhouette > 0.8
    assert stats.nearest_centroid_accuracy == 1.0


def test_random_labels_do_not_cluster():
    vectors, labels = blobs()
    shuffled = [labels[i] for i in torch.randperm(len(labels), generator=torch.Generator().manual_seed(1))]
    stats = cluster_stats(vectors, shuffled)
    assert abs(stats.within - stats.between) < 0.2
    assert stats.silhouette < 0.2
    assert stats.nearest_centroid_accuracy < 0.7


def test_cosine_distance_and_within_between_by_hand():
    vectors = torch.tensor([[1.0, 0.0], [2.0, 0.0], [0.0, 1.0]])
    dist = cosine_distances(vectors)
    assert torch.allclose(dist, torch.tensor([[0, 0, 1], [0, 0, 1], [1, 1, 0]], dtype=dist.dtype), atol=1e-12)
    within, between = within_between(vectors, ["x", "x", "y"])
    assert within == pytest.approx(0.0) and between == pytest.approx(1.0)


def test_leave_one_out_excludes_the_vector_itself():
    # each "b" vector alone is its own centroid only if it is not left out: b has one vector, so its
    # left-out centroid is missing and it must go to "a".
    vectors = torch.tensor([[1.0, 0.0], [1.0, 0.1], [0.0, 1.0]])
    assert nearest_centroid_accuracy(vectors, ["a", "a", "b"]) == pytest.approx(2 / 3)


def test_tsne_shape_and_seed():
    vectors, _ = blobs(n_per=5)
    a, b = tsne_2d(vectors, seed=3), tsne_2d(vectors, seed=3)
    assert a.shape == (15, 2)
    assert (a == b).all()


def test_errors():
    with pytest.raises(ValueError, match="at least 2 tasks"):
        cluster_stats(torch.randn(4, 3), ["a"] * 4)
    with pytest.raises(ValueError, match="one label per vector"):
        cluster_stats(torch.randn(4, 3), ["a", "b"])
    with pytest.raises(ValueError, match="at least 4"):
        tsne_2d(torch.randn(3, 3))
