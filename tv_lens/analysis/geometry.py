"""Do task vectors cluster by task? Cosine distances within vs between tasks, silhouette,
leave-one-out nearest-centroid accuracy, and a 2-D t-SNE map."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor

from tv_lens.codec import Record
from tv_lens.errors import TvLensError


@dataclass(frozen=True)
class ClusterStats(Record):
    """How well vectors separate by task label (cosine geometry)."""

    n_vectors: int
    n_tasks: int
    within: float
    between: float
    silhouette: float
    nearest_centroid_accuracy: float


def cosine_distances(vectors: Float[Tensor, "n d"]) -> Float[Tensor, "n n"]:
    """1 - cosine similarity between every pair of rows."""
    unit = torch.nn.functional.normalize(vectors.double(), dim=-1)
    return (1 - unit @ unit.T).clamp_min(0)


def _label_ids(labels: Sequence[str]) -> tuple[list[str], Tensor]:
    names = sorted(set(labels))
    return names, torch.tensor([names.index(label) for label in labels])


def mean_pairwise_distance(vectors: Float[Tensor, "n d"]) -> float:
    """Mean cosine distance over pairs of distinct rows (nan for fewer than two rows)."""
    n = len(vectors)
    if n < 2:
        return float("nan")
    return (cosine_distances(vectors).sum() / (n * (n - 1))).item()


def within_between(vectors: Float[Tensor, "n d"], labels: Sequence[str]) -> tuple[float, float]:
    """Mean cosine distance over pairs of the same task (self-pairs excluded) and of different tasks."""
    _, ids = _label_ids(labels)
    dist = cosine_distances(vectors)
    same = ids[:, None] == ids[None, :]
    off_diagonal = ~torch.eye(len(ids), dtype=torch.bool)
    return dist[same & off_diagonal].mean().item(), dist[~same].mean().item()


def nearest_centroid_accuracy(vectors: Float[Tensor, "n d"], labels: Sequence[str]) -> float:
    """Leave-one-out: each vector is assigned the task whose centroid (without that vector) is
    nearest in cosine distance; the fraction assigned their own task."""
    names, ids = _label_ids(labels)
    x = vectors.double()
    sums = torch.zeros(len(names), x.shape[1], dtype=x.dtype).index_add_(0, ids, x)
    counts = torch.bincount(ids, minlength=len(names)).to(x.dtype)
    hits = 0
    for i in range(len(ids)):
        own = ids[i]
        centroids = sums.clone()
        centroids[own] -= x[i]
        n = counts.clone()
        n[own] -= 1
        usable = n > 0
        similarity = torch.nn.functional.cosine_similarity(centroids[usable], x[i][None], dim=-1)
        hits += int(torch.nonzero(usable)[similarity.argmax()].item() == own.item())
    return hits / len(ids)


def silhouette(vectors: Float[Tensor, "n d"], labels: Sequence[str]) -> float:
    """Mean silhouette coefficient with cosine distance (-1..1; higher is better separated)."""
    from sklearn.metrics import silhouette_score

    return float(silhouette_score(vectors.double().numpy(), list(labels), metric="cosine"))


def cluster_stats(vectors: Float[Tensor, "n d"], labels: Sequence[str]) -> ClusterStats:
    """Every clustering number at once; needs at least two tasks and a task with two vectors."""
    if len(vectors) != len(labels):
        raise TvLensError(f"{len(vectors)} vectors but {len(labels)} labels: give one label per vector")
    n_tasks = len(set(labels))
    if n_tasks < 2 or n_tasks >= len(labels):
        raise TvLensError(f"clustering needs at least 2 tasks and more vectors than tasks: "
                          f"got {len(labels)} vectors of {n_tasks} task(s)")
    within, between = within_between(vectors, labels)
    return ClusterStats(
        n_vectors=len(labels), n_tasks=n_tasks, within=within, between=between,
        silhouette=silhouette(vectors, labels),
        nearest_centroid_accuracy=nearest_centroid_accuracy(vectors, labels),
    )


def tsne_2d(vectors: Float[Tensor, "n d"], seed: int = 0, perplexity: float = 30.0) -> np.ndarray:
    """A 2-D t-SNE embedding ([n, 2]) with cosine distance; perplexity is capped below n/3."""
    from sklearn.manifold import TSNE
    from threadpoolctl import threadpool_limits

    n = len(vectors)
    if n < 4:
        raise TvLensError(f"t-SNE needs at least 4 vectors, got {n}")
    tsne = TSNE(n_components=2, metric="cosine", init="pca", random_state=seed,
                perplexity=min(perplexity, (n - 1) / 3))
    # One OpenMP thread: on a busy machine sklearn's spinning threads made t-SNE 1000x slower.
    with threadpool_limits(1, user_api="openmp"):
        return tsne.fit_transform(vectors.double().numpy())
