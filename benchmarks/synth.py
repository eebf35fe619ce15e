"""Clustered synthetic CLIP-like vectors: a seeded mixture of low-rank gaussian clusters.

Uniform noise on the 512-d sphere is the worst case for any ANN index (every point is about as
far from every other) and nothing like real embeddings, which share a common direction and lie
near low-dimensional patches. So a vector here is

    normalise(centre_k + B_k z + e)

with `centre_k` on a cone around one global direction (unrelated pairs have cosine ~ `cone_cos`),
`B_k` a random `local_dim`-dimensional basis per cluster (within-cluster variation), and `e` a
little isotropic noise. Cluster sizes are log-normal. Every sample is a pure function of the
seeds, so runs and machines see the same data.
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import numpy.typing as npt


@dataclass(frozen=True)
class Mixture:
    """Parameters of the vector distribution (defaults: see the module docstring)."""

    dim: int = 512
    clusters: int = 2048
    local_dim: int = 16
    cone_cos: float = 0.5  # mean cosine between two cluster centres
    local_scale: float = 0.6  # norm of the within-cluster (low-rank) offset
    noise: float = 0.25  # norm of the isotropic offset
    text_gap: float = 2.0  # text-like queries: offset along a direction images do not use
    text_noise: float = 0.5
    size_sigma: float = 1.0  # log-normal spread of cluster sizes
    seed: int = 0

    def centres(self) -> npt.NDArray[np.float32]:
        """(clusters, dim) unit vectors around one shared direction."""
        rng = np.random.default_rng([self.seed, 1])
        axis = rng.standard_normal(self.dim)
        axis /= np.linalg.norm(axis)
        own = rng.standard_normal((self.clusters, self.dim)) / math.sqrt(self.dim)
        lift = math.sqrt(self.cone_cos / (1.0 - self.cone_cos))
        return _unit(own + lift * axis)

    def weights(self) -> npt.NDArray[np.float64]:
        """Probability of each cluster (log-normal sizes)."""
        rng = np.random.default_rng([self.seed, 2])
        w = rng.lognormal(0.0, self.size_sigma, self.clusters)
        return w / w.sum()

    def basis(self, k: int) -> npt.NDArray[np.float32]:
        """(local_dim, dim) random basis of cluster k, rows of norm ~1."""
        rng = np.random.default_rng([self.seed, 3, k])
        return rng.standard_normal((self.local_dim, self.dim), dtype=np.float32) / math.sqrt(
            self.dim
        )


def text_like(mix: Mixture, count: int, *, seed: int) -> npt.NDArray[np.float32]:
    """Queries shaped like CLIP text vectors: near an image cluster but off the image cone.

    CLIP's modality gap puts a text's best image at cosine ~0.3 (images among themselves: ~0.8),
    so text queries are out of the data's distribution, which is harder for graph indexes.
    """
    rng = np.random.default_rng([mix.seed, 5, seed])
    near = sample(mix, count, seed=seed)
    gap = rng.standard_normal(mix.dim)
    gap /= np.linalg.norm(gap)
    noise = rng.standard_normal((count, mix.dim)) * (mix.text_noise / math.sqrt(mix.dim))
    return _unit(near + mix.text_gap * gap + noise)


def _unit(x: npt.NDArray[np.floating]) -> npt.NDArray[np.float32]:
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def sample(mix: Mixture, n: int, *, seed: int) -> npt.NDArray[np.float32]:
    """(n, dim) unit vectors drawn from `mix`, shuffled; different `seed` = held-out samples."""
    rng = np.random.default_rng([mix.seed, 4, seed])
    counts = rng.multinomial(n, mix.weights())
    centres = mix.centres()
    out = np.empty((n, mix.dim), dtype=np.float32)
    row = 0
    for k in np.flatnonzero(counts):
        c = int(counts[k])
        z = rng.standard_normal((c, mix.local_dim), dtype=np.float32)
        z *= mix.local_scale / math.sqrt(mix.local_dim)
        e = rng.standard_normal((c, mix.dim), dtype=np.float32) * (mix.noise / math.sqrt(mix.dim))
        out[row : row + c] = centres[k] + z @ mix.basis(int(k)) + e
        row += c
    out /= np.linalg.norm(out, axis=1, keepdims=True)
    return out[rng.permutation(n)]


def chunks(
    vectors: npt.NDArray[np.float32], size: int = 65536, *, first_id: int = 1
) -> Iterator[tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]]:
    """(ids, vectors) chunks as Library.vectors yields them, for imgsearch.vectors.build."""
    for start in range(0, len(vectors), size):
        part = vectors[start : start + size]
        yield np.arange(first_id + start, first_id + start + len(part), dtype=np.int64), part


def cached_sample(
    mix: Mixture, n: int, *, seed: int, cache: Path | None
) -> npt.NDArray[np.float32]:
    """`sample`, kept as .npy under `cache` (1M vectors take a minute to draw on 2 cores)."""
    if cache is None:
        return sample(mix, n, seed=seed)
    images_only = replace(mix, text_gap=Mixture.text_gap, text_noise=Mixture.text_noise)
    key = hashlib.blake2b(repr((images_only, n, seed)).encode(), digest_size=8).hexdigest()
    path = cache / f"vectors-{n}-{seed}-{key}.npy"
    if path.is_file():
        return np.load(path)
    vectors = sample(mix, n, seed=seed)
    cache.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp.npy")
    np.save(tmp, vectors)
    os.replace(tmp, path)
    return vectors
