"""Batch planning for the streaming loader: which rows form which batch, in which order.

The plan is pure numpy over small metadata columns (shapes, buckets, scores), never tensors, so
it is cheap to recompute. That is how resume works: the batch sequence of an epoch is a
deterministic function of (seed, epoch, rank, world_size, the shard list and the data config);
a resumed loader recomputes it and skips the batches already emitted without reading them
(CONVENTIONS.md rule 6).

One epoch, one rank:

1. Units (one row group of one shard, with its rows that passed the filters) are repeated by
   their source's weight, shuffled with (seed, epoch), and dealt to ranks greedily by kept-row
   count: rank splits are disjoint, at row-group granularity (each row group is read by one
   rank), and balanced to within one row group.
2. A rank's units are cut into windows of ``window`` row groups; rows are shuffled within a
   window (the shuffle buffer).
3. Rows stream into one accumulator per bucket key (kind, aspect bucket, latent frame count and
   every stacked tensor shape, so a batch always stacks); a batch is emitted when its
   accumulator fills. Leftovers become short batches at the end of the epoch (or are dropped).
4. Image batches (1 latent frame) and video batches are interleaved by ``video_ratio`` with a
   Bresenham schedule whose phase is ``rank / world_size``: over any run of steps each rank
   takes the ratio, and by Hermite's identity every step's global batch holds
   ``floor(W (s+1) r) - floor(W s r)`` video batches, i.e. exactly ``W r`` when that is an
   integer (SAMA.md §4: 448 images / 16 + 112 videos / 4 = 28 + 28 batches, ratio 0.5). When
   one kind runs out the other fills the rest of the epoch.
5. Ranks are evened out so DDP ranks step together: ``pad`` replays the rank's first batches
   (flagged ``padding``), ``truncate`` cuts every rank to the shortest.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np

from sama.errors import ConfigError
from sama.rng import numpy_generator

# Batch-level entries: identical for every sample of a batch, so collate keeps one value.
BATCH_LEVEL_KEYS = ("kind", "media", "bucket")


@dataclass(frozen=True)
class BucketKey:
    """What makes rows stackable: record kind, aspect bucket and every stacked tensor shape."""

    kind: str  # "clip" | "pair"
    width: int  # bucket width, px
    height: int  # bucket height, px
    shapes: tuple[tuple[int, ...], ...]  # (target CTHW, anchor NKD) or (target, source, anchor)

    @property
    def latent_frames(self) -> int:
        return self.shapes[0][1]

    @property
    def is_video(self) -> bool:
        return self.latent_frames > 1

    @property
    def media(self) -> str:
        return "video" if self.is_video else "image"


@dataclass(frozen=True)
class Unit:
    """One row group of one shard, and the rows of it that passed the source's filters."""

    source: int  # index into DataConfig.sources
    shard: int  # index into the loader's shard list
    row_group: int
    rows: np.ndarray  # int64 [n] positions within the row group
    keys: np.ndarray  # int64 [n] bucket key id of each row


@dataclass(frozen=True)
class Slot:
    """One occurrence of a unit in an epoch (a unit appears ``weight`` times; padding replays)."""

    unit: int
    repeat: int = 0  # occurrence index from the source weight (part of the sample's rng id)
    replay: int = 0  # > 0 for the re-read of a padding batch (a separate read, same samples)


@dataclass(frozen=True)
class BatchPlan:
    index: int  # position in the rank's epoch sequence
    key: int  # bucket key id
    rows: tuple[tuple[int, int], ...]  # (slot index, row position within the row group)
    padding: bool = False


@dataclass(frozen=True)
class PlanSettings:
    seed: int
    batch_sizes: tuple[int, ...]  # per bucket key id
    video_ratio: float
    window: int  # row groups per shuffle window
    drop_last: bool
    uneven: str  # "pad" | "truncate"
    weights: tuple[float, ...]  # per source


@dataclass
class EpochPlan:
    epoch: int
    slots: list[Slot]
    batches: list[BatchPlan]


def epoch_slots(units: list[Unit], weights: tuple[float, ...], seed: int, epoch: int) -> list[Slot]:
    """Units repeated by source weight (floor(w) times, plus once more with probability
    frac(w), drawn per unit), then shuffled; both seeded by (seed, epoch)."""
    rng = numpy_generator(seed, "unit-weights", epoch)
    extra = rng.random(len(units))
    slots = []
    for i, u in enumerate(units):
        w = weights[u.source]
        n = math.floor(w) + (1 if extra[i] < w - math.floor(w) else 0)
        slots.extend(Slot(i, r) for r in range(n))
    order = numpy_generator(seed, "unit-order", epoch).permutation(len(slots))
    return [slots[j] for j in order]


def deal_to_ranks(slots: list[Slot], units: list[Unit], world_size: int) -> list[list[int]]:
    """Slot indices per rank, each next slot to the rank with the fewest rows (ties: lowest)."""
    heap = [(0, r) for r in range(world_size)]
    out: list[list[int]] = [[] for _ in range(world_size)]
    for i, s in enumerate(slots):
        rows, r = heapq.heappop(heap)
        out[r].append(i)
        heapq.heappush(heap, (rows + len(units[s.unit].rows), r))
    return out


def rank_key_counts(
    per_rank: list[list[int]], slots: list[Slot], units: list[Unit], num_keys: int
) -> np.ndarray:
    """[world_size, num_keys] row counts of every rank's share of the epoch."""
    out = np.zeros((len(per_rank), num_keys), dtype=np.int64)
    for r, ids in enumerate(per_rank):
        if ids:
            keys = np.concatenate([units[slots[i].unit].keys for i in ids])
            out[r] = np.bincount(keys, minlength=num_keys)
    return out


def count_batches(key_counts: np.ndarray, batch_sizes: np.ndarray, drop_last: bool) -> int:
    full = key_counts // batch_sizes
    return int(full.sum() + (0 if drop_last else (key_counts % batch_sizes > 0).sum()))


def form_batches(
    slot_ids: list[int],
    slots: list[Slot],
    units: list[Unit],
    is_video: list[bool],
    st: PlanSettings,
    epoch: int,
    rank: int,
) -> tuple[list[tuple[int, tuple]], list[tuple[int, tuple]]]:
    """Shuffle rows within windows, fill per-key accumulators; (image, video) batches in order
    of completion, each ``(key, ((slot, row), ...))``."""
    slot_col, row_col, key_col = [], [], []
    for w0 in range(0, len(slot_ids), st.window):
        win = slot_ids[w0 : w0 + st.window]
        s = np.concatenate([np.full(len(units[slots[i].unit].rows), i) for i in win])
        r = np.concatenate([units[slots[i].unit].rows for i in win])
        k = np.concatenate([units[slots[i].unit].keys for i in win])
        perm = numpy_generator(st.seed, "row-window", epoch, rank, w0).permutation(len(s))
        slot_col.append(s[perm])
        row_col.append(r[perm])
        key_col.append(k[perm])
    if not slot_col:
        return [], []
    slot_a, row_a, key_a = (np.concatenate(c) for c in (slot_col, row_col, key_col))
    n = len(key_a)
    done: list[tuple[int, int, np.ndarray]] = []  # (completion position, key, row positions)
    for key in np.unique(key_a):
        idx = np.flatnonzero(key_a == key)
        b = st.batch_sizes[key]
        for j in range(0, len(idx), b):
            members = idx[j : j + b]
            if len(members) == b:
                done.append((int(members[-1]), int(key), members))
            elif not st.drop_last:  # leftovers: short batches at the end, by first arrival
                done.append((n + int(members[0]), int(key), members))
    done.sort(key=lambda d: d[0])
    images, videos = [], []
    for _, key, members in done:
        rows = tuple(zip(slot_a[members].tolist(), row_a[members].tolist(), strict=True))
        (videos if is_video[key] else images).append((key, rows))
    return images, videos


def interleave(images: list, videos: list, ratio: float, rank: int, world_size: int) -> list:
    """Bresenham merge: step s is a video step iff floor((s+1)r + p) > floor(s r + p),
    p = rank / world_size (exact rational arithmetic); the other kind fills once one runs out."""
    r = Fraction(ratio).limit_denominator(1_000_000)
    a, den = r.numerator * world_size, r.denominator * world_size
    off = rank * r.denominator  # p = off / den

    def floor_at(step: int) -> int:  # floor(step * r + p), in integers
        return (step * a + off) // den

    out, i, v, s = [], 0, 0, 0
    while i < len(images) or v < len(videos):
        want_video = floor_at(s + 1) > floor_at(s)
        if v < len(videos) and (want_video or i >= len(images)):
            out.append(videos[v])
            v += 1
        else:
            out.append(images[i])
            i += 1
        s += 1
    return out


def plan_epoch(
    units: list[Unit],
    keys: list[BucketKey],
    st: PlanSettings,
    epoch: int,
    rank: int,
    world_size: int,
) -> EpochPlan:
    """The batch sequence of ``rank`` for ``epoch`` (see the module docstring)."""
    slots = epoch_slots(units, st.weights, st.seed, epoch)
    per_rank = deal_to_ranks(slots, units, world_size)
    sizes = np.asarray(st.batch_sizes, dtype=np.int64)
    key_counts = rank_key_counts(per_rank, slots, units, len(keys))
    counts = [count_batches(kc, sizes, st.drop_last) for kc in key_counts]
    target = max(counts) if st.uneven == "pad" else min(counts)
    if target == 0:
        raise ConfigError(
            f"epoch {epoch}: no batches for rank {rank} of {world_size} ({sum(counts)} in all): "
            "the sources hold too few rows after filtering; add data, lower the batch sizes, "
            "or set data.drop_last=false / data.uneven_ranks=pad"
        )
    is_video = [k.is_video for k in keys]
    images, videos = form_batches(per_rank[rank], slots, units, is_video, st, epoch, rank)
    seq = interleave(images, videos, st.video_ratio, rank, world_size)[:target]
    if not seq:
        raise ConfigError(
            f"epoch {epoch}: rank {rank} of {world_size} got no rows ({len(slots)} row groups "
            "in all); every rank needs at least one row group: write smaller row groups or use "
            "fewer ranks"
        )
    batches = [BatchPlan(i, key, rows) for i, (key, rows) in enumerate(seq)]
    for j in range(target - len(seq)):  # pad: replay from the start, as separate reads
        src = batches[j % len(seq)]
        remap: dict[int, int] = {}
        for s, _ in src.rows:
            if s not in remap:
                remap[s] = len(slots)
                old = slots[s]
                slots.append(Slot(old.unit, old.repeat, replay=1 + j // len(seq)))
        rows = tuple((remap[s], r) for s, r in src.rows)
        batches.append(BatchPlan(len(batches), src.key, rows, padding=True))
    return EpochPlan(epoch, slots, batches)


def collate(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack tensors that share shape and dtype across the batch; keep everything else as a
    list (strings, ids, per-prompt text embeddings, sources of different lengths, None)."""
    import torch

    out: dict[str, Any] = {}
    names: dict[str, None] = {}
    for s in samples:
        names.update(dict.fromkeys(s))
    for name in names:
        vals = [s.get(name) for s in samples]
        if name in BATCH_LEVEL_KEYS:
            out[name] = vals[0]
        elif all(isinstance(v, torch.Tensor) for v in vals) and all(
            v.shape == vals[0].shape and v.dtype == vals[0].dtype for v in vals
        ):
            out[name] = torch.stack(vals)
        else:
            out[name] = vals
    return out
