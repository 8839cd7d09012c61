"""Near-duplicate clips from their SigLIP global anchor tokens: which clip copies which.

The same shot uploaded twice, re-encoded at another bitrate or resized, gives clips that look
alike to SigLIP; training on both over-weights that content (NeMo Curator's semantic dedup, the
same idea on CLIP embeddings). Every clip row already carries its anchor tokens (SAMA.md
section 2: 65 per anchor frame, 64 pooled patch tokens then one global token), so the global
token (index ``GLOBAL_TOKEN``) is the clip's embedding for free.

Algorithm (``find_duplicates``): L2-normalise the embeddings, find each clip's ``k`` nearest
neighbours by inner product (= cosine) with faiss (``IndexFlatIP``: exact; ``IndexIVFFlat``
for large sets, approximate), then walk the clips in a stable order (higher ``priority`` first,
then ``clip_id``): a clip that is within ``threshold`` of a clip already kept becomes its
duplicate, otherwise it is kept and claims its unclaimed neighbours within ``threshold``.
Every duplicate's ``similarity`` to the clip it is marked against is therefore >= threshold
(no chains), and the result depends only on the set of clips, not on their input order.

Output rows: ``(clip_id, duplicate_of, similarity)`` for the duplicates only, sorted by
``clip_id``: the ``dedup/v1`` table (``datasets_spec.dedup``).

Legend: ``tokens_AKD`` one clip's anchor tokens (A anchors x K=65 tokens x D), ``emb_ND`` N
clip embeddings of width D.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from sama.errors import ConfigError, require

GLOBAL_TOKEN = 64  # index of the global token among the 65 per anchor (64 local, then global)
FLAT_MAX = 200_000  # ``index="auto"``: exact search up to this many clips, IVF beyond


@dataclass
class DedupConfig:
    """``dedup.*``: when two clips are near-duplicates and how they are searched."""

    threshold: float = 0.95  # cosine similarity of the global tokens at or above which
    neighbours: int = 32  # k nearest clips searched per clip (groups larger than k may split)
    index: Literal["auto", "flat", "ivf"] = "auto"
    nprobe: int = 16  # ivf: inverted lists searched per query

    def validate(self) -> DedupConfig:
        if not 0.0 < self.threshold <= 1.0:
            raise ConfigError(f"dedup.threshold={self.threshold} must be in (0, 1] (default 0.95)")
        if self.neighbours < 2:
            raise ConfigError(f"dedup.neighbours={self.neighbours} must be >= 2 (default 32)")
        if self.index not in ("auto", "flat", "ivf"):
            raise ConfigError(f"dedup.index={self.index!r}: use 'auto', 'flat' or 'ivf'")
        if self.nprobe < 1:
            raise ConfigError(f"dedup.nprobe={self.nprobe} must be >= 1 (default 16)")
        return self

    def method(self, num_clips: int) -> str:
        """What ``find_duplicates`` does for ``num_clips`` clips (for the table's provenance)."""
        index = self._index(num_clips)
        probe = f", nprobe={self.nprobe}" if index == "ivf" else ""
        return (
            f"faiss-{_faiss_version()} {'IndexIVFFlat' if index == 'ivf' else 'IndexFlatIP'} "
            f"cosine of SigLIP global anchor tokens (token {GLOBAL_TOKEN}), k={self.neighbours}"
            f"{probe}, greedy keep-first by (priority desc, clip_id)"
        )

    def _index(self, num_clips: int) -> str:
        if self.index == "auto":
            return "flat" if num_clips <= FLAT_MAX else "ivf"
        return self.index


@dataclass(frozen=True)
class Duplicate:
    """``clip_id`` is a near-duplicate of the kept clip ``duplicate_of`` (cosine ``similarity``)."""

    clip_id: str
    duplicate_of: str
    similarity: float


def clip_embedding(tokens_AKD: np.ndarray) -> np.ndarray:
    """One clip's embedding: the mean of its anchors' L2-normalised global tokens, normalised."""
    tokens_AKD = np.asarray(tokens_AKD, dtype=np.float32)
    if tokens_AKD.ndim != 3 or tokens_AKD.shape[1] <= GLOBAL_TOKEN:
        raise ValueError(f"anchor tokens must be A x 65 x D; got shape {tokens_AKD.shape}")
    g_AD = _normalise(tokens_AKD[:, GLOBAL_TOKEN])
    return _normalise(g_AD.mean(axis=0, keepdims=True))[0]


def find_duplicates(
    clip_ids: Sequence[str],
    emb_ND: np.ndarray,
    cfg: DedupConfig | None = None,
    priority: Sequence[float] | None = None,
) -> list[Duplicate]:
    """The near-duplicate clips among ``clip_ids`` (see the module docstring).

    ``priority`` (optional, one per clip, e.g. resolution or duration): within a group the clip
    with the highest priority is kept; ties go to the smallest ``clip_id``.
    """
    cfg = (cfg or DedupConfig()).validate()
    ids = [str(c) for c in clip_ids]
    n = len(ids)
    if len(set(ids)) != n:
        raise ValueError("clip_ids must be unique")
    if n == 0:
        return []
    x_ND = _normalise(np.asarray(emb_ND, dtype=np.float32))
    if x_ND.shape[0] != n:
        raise ValueError(f"{n} clip ids but {x_ND.shape[0]} embeddings")
    sims_NK, nbrs_NK = _search(x_ND, min(cfg.neighbours, n), cfg)
    prio = np.zeros(n) if priority is None else np.asarray(priority, dtype=np.float64)
    order = sorted(range(n), key=lambda i: (-prio[i], ids[i]))
    rank = {i: r for r, i in enumerate(order)}
    owner: dict[int, tuple[int, float]] = {}  # duplicate -> (kept clip, similarity)
    kept: set[int] = set()
    for i in order:
        if i in owner:
            continue
        near = [(float(s), int(j)) for s, j in zip(sims_NK[i], nbrs_NK[i], strict=True)
                if j >= 0 and j != i and s >= cfg.threshold]  # fmt: skip
        keepers = [(s, j) for s, j in near if j in kept]
        if keepers:  # i was not in that keeper's k nearest, but it is close to it
            s, j = max(keepers, key=lambda sj: (sj[0], -rank[sj[1]]))
            owner[i] = (j, s)
            continue
        kept.add(i)
        for s, j in near:
            if j not in owner and j not in kept:
                owner[j] = (i, s)
    rows = [Duplicate(ids[j], ids[i], round(s, 6)) for j, (i, s) in owner.items()]
    return sorted(rows, key=lambda d: d.clip_id)


def _search(x_ND: np.ndarray, k: int, cfg: DedupConfig) -> tuple[np.ndarray, np.ndarray]:
    """``(similarities N x k, neighbour indices N x k)`` by inner product."""
    faiss = require("faiss", "dedup")
    n, d = x_ND.shape
    if cfg._index(n) == "flat":
        index = faiss.IndexFlatIP(d)
    else:
        nlist = max(1, min(int(4 * np.sqrt(n)), n // 39))  # faiss wants >= 39 points per list
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(d), d, nlist, faiss.METRIC_INNER_PRODUCT)
        index.train(x_ND)
        index.nprobe = cfg.nprobe
    index.add(x_ND)
    sims_NK, nbrs_NK = index.search(x_ND, k)
    return sims_NK, nbrs_NK


def _normalise(x: np.ndarray) -> np.ndarray:
    if x.ndim != 2:
        raise ValueError(f"embeddings must be N x D; got shape {x.shape}")
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return np.ascontiguousarray(x / np.maximum(norm, 1e-12), dtype=np.float32)


def _faiss_version() -> str:
    from importlib import metadata

    try:
        return metadata.version("faiss-cpu")
    except metadata.PackageNotFoundError:
        return "unknown"
