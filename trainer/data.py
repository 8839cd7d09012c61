"""Streaming, resumable loader over ``clips`` and ``pairs`` Parquet shards (v1 and v2).

Shards live on any fsspec URI, in a build's layout (``ROOT/clips/*.parquet``) or a published
repo's (``ROOT/data/clips/...``: a downloaded folder, or ``hf://datasets/ORG/NAME`` itself). At
start-up the loader reads every shard's footer and a few small columns (shapes, buckets, judge
scores) in a thread pool, refuses hostile or broken shards with the checks ``sama validate``
runs (``trainer/shard_index.py``), checks spec and provenance against the trainer's expectation
(CONVENTIONS.md rule 3) and builds an index of row groups. ``data.cache_dir`` keeps remote
shards and that index on local disk, shared by the node's ranks (``trainer/shard_cache.py``). Each epoch's batch sequence is then planned from that index alone
(``trainer.batching``): resume recomputes the plan and skips what was emitted, so a resumed run
yields exactly the batches an uninterrupted one would.

Background work: ``num_workers`` threads materialise planned batches (read a row group, decode
tensors, run the per-sample ``transform`` hook, e.g. the stage-0 pretext corruption, collate)
``prefetch`` batches ahead of the training step. Threads rather than worker processes: every
row group is read exactly once even when its rows end up in batches materialised by different
workers (a batch draws on several row groups of its shuffle window and rare buckets carry rows
across windows), nothing is pickled between processes, and the heavy parts (Parquet decoding,
zstd, memcpy, torch ops) run outside the GIL. Which worker builds a batch never changes its
content, so the sequence does not depend on ``num_workers``.

Legend: B batch, C latent channels, T latent frames, H/W latent height/width, N anchor frames,
K tokens per anchor (65), D SigLIP width, L text tokens, E text width.
"""

from __future__ import annotations

import math
import threading
from collections import Counter, deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from datasets_spec.checks import Limits
from datasets_spec.provenance import stable_hash
from sama.config import check
from sama.errors import ConfigError
from trainer.batching import BatchPlan, EpochPlan, PlanSettings, collate, plan_epoch
from trainer.dedup_marks import log_marks
from trainer.shard_cache import ShardCache
from trainer.shard_index import SCORE_KEYS, build_index
from trainer.shard_rows import decode_rows, own, read_columns, read_row_group

STATE_VERSION = 1

Transform = Callable[[dict[str, Any], int], dict[str, Any]]


@dataclass
class SourceConfig:
    """One dataset root (or one ``.parquet`` file) and what to take from it."""

    uri: str = ""  # ROOT holding ``{kind}/*.parquet``, or a single shard ``*.parquet``
    kind: Literal["clips", "pairs"] = "pairs"
    weight: float = 1.0  # times each row group is used per epoch (fraction: a seeded subset)
    media: Literal["any", "image", "video"] = "any"  # image = 1 latent frame
    min_scores: dict[str, float] | None = None  # e.g. {"if": 9, "vq": 9, "cp": 9}; pairs only

    def validate(self) -> None:
        check(bool(self.uri), "data.sources[].uri is empty; set it to a dataset root or shard")
        check(
            self.kind in ("clips", "pairs"),
            f"data.sources[].kind must be clips or pairs, got {self.kind!r}",
        )
        check(
            self.media in ("any", "image", "video"),
            f"data.sources[].media must be any, image or video, got {self.media!r}",
        )
        check(self.weight >= 0, f"data.sources[].weight must be >= 0, got {self.weight}")
        if self.min_scores:
            check(self.kind == "pairs", f"{self.uri}: min_scores filter only pairs (judge scores)")
            bad = [k for k in self.min_scores if k not in SCORE_KEYS]
            check(not bad, f"{self.uri}: unknown min_scores keys {bad}; use {list(SCORE_KEYS)}")


@dataclass
class DataConfig:
    """The streaming loader. ``video_batch_ratio`` is the fraction of steps that are video
    batches; the paper's global batch (448 images at 16 per device + 112 videos at 4 per
    device = 28 + 28 batches, SAMA.md §4) is ratio 0.5."""

    sources: list[SourceConfig] = field(default_factory=list)
    image_batch_size: int = 16
    video_batch_size: int = 4
    video_batch_ratio: float = 0.5
    shuffle_buffer_row_groups: int = 8  # rows are shuffled within windows of this many
    seed: int = 0
    num_workers: int = 2  # background threads; 0 = materialise in the calling thread
    prefetch: int = 4  # batches in flight ahead of the consumer
    max_text_tokens: int = 512  # umT5 limit (SAMA.md §1); longer prompt embeddings are cut
    load_text_embeds: bool = True  # False: skip the (large) precomputed text embeddings
    drop_last: bool = False  # drop short end-of-epoch batches of each bucket
    uneven_ranks: Literal["pad", "truncate"] = "pad"  # how ranks get equal batch counts
    pin_memory: bool = False  # pin batches in the workers (only when CUDA is available)
    # Node-local copies of remote shards (hf://, s3://, ...) and of the shard index, shared by
    # the node's ranks; "" = read remote shards in place and build the index in each process.
    cache_dir: str = ""
    cache_max_gb: float = 200.0  # least recently used shards are deleted beyond this
    index_workers: int = 16  # threads reading shard footers at start-up
    # A row group above this (uncompressed, from the footer) is refused before it is read.
    max_row_group_mb: int = 1024
    # Leave out the clips a source root's dedup/v1 table (`sama dedup ROOT`) marks as
    # near-duplicates of a kept clip; false trains on every clip.
    skip_duplicates: bool = True

    def validate(self) -> None:
        for s in self.sources:
            s.validate()
        for name in (
            "image_batch_size",
            "video_batch_size",
            "shuffle_buffer_row_groups",
            "prefetch",
            "max_text_tokens",
        ):
            check(getattr(self, name) >= 1, f"data.{name} must be >= 1, got {getattr(self, name)}")
        check(self.num_workers >= 0, f"data.num_workers must be >= 0, got {self.num_workers}")
        check(self.index_workers >= 1, f"data.index_workers must be >= 1, got {self.index_workers}")
        check(self.cache_max_gb > 0, f"data.cache_max_gb must be > 0, got {self.cache_max_gb}")
        check(
            self.max_row_group_mb >= 1,
            f"data.max_row_group_mb must be >= 1 (MiB), got {self.max_row_group_mb}",
        )
        check(
            0.0 <= self.video_batch_ratio <= 1.0,
            f"data.video_batch_ratio must be in [0, 1], got {self.video_batch_ratio}",
        )
        check(
            self.uneven_ranks in ("pad", "truncate"),
            f"data.uneven_ranks must be pad or truncate, got {self.uneven_ranks!r}",
        )


class _Entry:
    def __init__(self) -> None:
        self.ready = threading.Event()
        self.rows: dict[int, dict] = {}
        self.error: BaseException | None = None


class _RowGroupCache:
    """Decoded rows of the row groups that one epoch's remaining batches need. Each row group
    is read once, by whichever worker asks first; a row is dropped after its last use, so
    memory holds only rows waiting for their batch (the shuffle window and bucket carry-over).
    Rows are zero-copy views of the row group's Arrow buffers (collate makes the one copy);
    rows whose batch is more than ``horizon`` batches away (bucket carry-over) are copied out
    at once, so a few late rows never pin a whole row group."""

    def __init__(self, loader: StreamingLoader, plan: EpochPlan, start: int) -> None:
        self._loader, self._plan = loader, plan
        self._need: dict[int, Counter] = {}
        self._use: dict[tuple[int, int], int] = {}  # (slot, row) -> batch index
        for b in plan.batches[start:]:
            for slot, row in b.rows:
                self._need.setdefault(slot, Counter())[row] += 1
                self._use[slot, row] = b.index
        self._entries: dict[int, _Entry] = {}
        self._lock = threading.Lock()

    def take(self, slot: int, row: int, batch_index: int) -> dict:
        with self._lock:
            entry = self._entries.get(slot)
            owner = entry is None
            if owner:
                entry = self._entries[slot] = _Entry()
        if owner:
            try:
                entry.rows = self._load(slot, batch_index)
            except BaseException as e:
                entry.error = e
                raise
            finally:
                entry.ready.set()
        entry.ready.wait()
        if entry.error is not None:
            raise entry.error
        with self._lock:
            sample = entry.rows[row]
            need = self._need[slot]
            need[row] -= 1
            if not need[row]:
                del need[row], entry.rows[row]
            if not need:
                del self._need[slot], self._entries[slot]
        return dict(sample)

    def _load(self, slot_index: int, batch_index: int) -> dict[int, dict]:
        ld = self._loader
        slot = self._plan.slots[slot_index]
        unit = ld.units[slot.unit]
        shard = ld.shards[unit.shard]
        tbl = read_row_group(
            shard, unit.row_group, read_columns(shard.kind, ld.cfg.load_text_embeds)
        )
        rows = decode_rows(
            tbl,
            sorted(self._need[slot_index]),
            shard.kind,
            ld.cfg.load_text_embeds,
            ld.cfg.max_text_tokens,
        )
        for r, s in rows.items():
            if self._use[slot_index, r] > batch_index + ld.horizon:
                own(s)
            s["rng_id"] = s["sample_id"] if not slot.repeat else f"{s['sample_id']}#{slot.repeat}"
            s["source_index"] = unit.source
        return rows


def _one_torch_thread() -> None:
    # Thread-local (OpenMP ICV, MKL local): the workers' memcpy-sized torch ops would otherwise
    # each start an OpenMP team and fight the training thread for cores, as DataLoader worker
    # processes do with torch.set_num_threads(1). Measured ~10x slower collation on 2 busy cores.
    import torch

    torch.set_num_threads(1)


class StreamingLoader:
    """Iterate bucket-homogeneous batches forever (epoch after epoch), from the saved state.

    ``transform(sample, epoch) -> sample`` runs in the workers before collation (stage 0: the
    pretext corruption with its (seed, rng_id, epoch) generator); it may add keys but must not
    write into the sample's tensors in place (they are views of the read buffers).
    ``expected_provenance``: see :func:`trainer.shard_index.check_provenance`.
    ``rank``/``world_size``: the ``torch.distributed`` ones.
    """

    def __init__(
        self,
        cfg: DataConfig,
        *,
        rank: int = 0,
        world_size: int = 1,
        expected_provenance: dict | None = None,
        transform: Transform | None = None,
    ) -> None:
        cfg.validate()
        if not cfg.sources:
            raise ConfigError("data.sources is empty; add at least one {uri, kind} entry")
        if not 0 <= rank < world_size:
            raise ConfigError(f"rank {rank} is not in [0, world_size={world_size})")
        self.cfg, self.rank, self.world_size, self.transform = cfg, rank, world_size, transform
        self.cache = (
            ShardCache(cfg.cache_dir, int(cfg.cache_max_gb * (1 << 30))) if cfg.cache_dir else None
        )
        self.shards, self.units, self.keys = build_index(
            cfg.sources,
            expected_provenance,
            limits=Limits(max_row_group_bytes=cfg.max_row_group_mb << 20),
            workers=cfg.index_workers,
            cache=self.cache,
            skip_duplicates=cfg.skip_duplicates,
        )
        self.duplicates_skipped = sum(s.duplicates for s in self.shards)
        if rank == 0:
            log_marks(cfg.sources, cfg.skip_duplicates, self.duplicates_skipped)
        self.settings = PlanSettings(
            seed=cfg.seed,
            batch_sizes=tuple(
                cfg.video_batch_size if k.is_video else cfg.image_batch_size for k in self.keys
            ),
            video_ratio=cfg.video_batch_ratio,
            window=cfg.shuffle_buffer_row_groups,
            drop_last=cfg.drop_last,
            uneven=cfg.uneven_ranks,
            weights=tuple(s.weight for s in cfg.sources),
        )
        identity = {
            "shards": [[s.uri, s.row_groups] for s in self.shards],
            "sources": [asdict(s) for s in cfg.sources],
            "settings": asdict(self.settings),
        }
        if self.duplicates_skipped:  # another dedup table gives other batches
            identity["duplicates"] = [s.duplicates for s in self.shards]
        self.fingerprint = stable_hash(identity)
        # batches within which a freshly read row group is consumed (window + prefetch)
        rows_per_unit = sum(len(u.rows) for u in self.units) / len(self.units)
        min_batch = min(cfg.image_batch_size, cfg.video_batch_size)
        self.horizon = 2 * cfg.prefetch + math.ceil(
            2 * cfg.shuffle_buffer_row_groups * rows_per_unit / min_batch
        )
        self._epoch, self._emitted = 0, 0
        self._plans: dict[int, EpochPlan] = {}

    # ---- what the shards say ----------------------------------------------------------------
    @property
    def provenance(self) -> dict:
        return self.shards[0].provenance

    @property
    def black_latent(self):
        """``[C]`` float32 latent of a black frame (provenance ``black_latent``), or None."""
        import torch

        values = {
            tuple(s.provenance["black_latent"])
            for s in self.shards
            if s.provenance.get("black_latent") is not None
        }
        if len(values) > 1:
            raise ConfigError("shards disagree on provenance `black_latent`; rebuild them together")
        return torch.tensor(values.pop(), dtype=torch.float32) if values else None

    # ---- plan -----------------------------------------------------------------------------
    def plan(self, epoch: int) -> EpochPlan:
        if epoch not in self._plans:
            self._plans = {e: p for e, p in self._plans.items() if e >= epoch - 1}
            self._plans[epoch] = plan_epoch(
                self.units, self.keys, self.settings, epoch, self.rank, self.world_size
            )
        return self._plans[epoch]

    def _roll_over(self) -> None:
        # after the last batch of an epoch, the position is the start of the next one
        if self._emitted >= len(self.plan(self._epoch).batches):
            self._epoch, self._emitted = self._epoch + 1, 0

    def batches_in_epoch(self, epoch: int | None = None) -> int:
        """Batches of ``epoch`` for this rank (default: the epoch the next batch comes from)."""
        self._roll_over()
        return len(self.plan(self._epoch if epoch is None else epoch).batches)

    @property
    def epoch(self) -> int:
        """The epoch the next batch comes from."""
        self._roll_over()
        return self._epoch

    # ---- state ----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Position after the last batch handed out (prefetched batches do not count)."""
        self._roll_over()
        return {
            "version": STATE_VERSION,
            "epoch": self._epoch,
            "batches_emitted": self._emitted,
            "seed": self.cfg.seed,
            "rank": self.rank,
            "world_size": self.world_size,
            "fingerprint": self.fingerprint,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue where ``state`` stopped; call before iterating. Exact resume needs the same
        shards, data config, rank and world size (``num_workers``/``prefetch`` may change)."""
        if state.get("version") != STATE_VERSION:
            raise ConfigError(
                f"loader state version {state.get('version')!r}, expected {STATE_VERSION}"
            )
        for name, mine in (
            ("rank", self.rank),
            ("world_size", self.world_size),
            ("seed", self.cfg.seed),
            ("fingerprint", self.fingerprint),
        ):
            if state[name] != mine:
                raise ConfigError(
                    f"loader state was saved with {name}={state[name]!r}, this loader has "
                    f"{mine!r}: exact resume needs the same shards, data config, rank and world size"
                )
        self._epoch, self._emitted = int(state["epoch"]), int(state["batches_emitted"])

    # ---- iteration --------------------------------------------------------------------------
    def _stream(self) -> Iterator[tuple[int, _RowGroupCache, BatchPlan]]:
        epoch, start = self._epoch, self._emitted
        while True:
            plan = self.plan(epoch)
            cache = _RowGroupCache(self, plan, start)
            for bp in plan.batches[start:]:
                yield epoch, cache, bp
            epoch, start = epoch + 1, 0

    def _materialise(self, epoch: int, cache: _RowGroupCache, bp: BatchPlan) -> dict[str, Any]:
        samples = [cache.take(slot, row, bp.index) for slot, row in bp.rows]
        if self.transform is not None:
            samples = [self.transform(s, epoch) for s in samples]
        batch = collate(samples)
        key = self.keys[bp.key]
        batch.update(
            epoch=epoch, batch_index=bp.index, padding=bp.padding, latent_frames=key.latent_frames
        )
        if self.cfg.pin_memory:
            import torch

            if torch.cuda.is_available():
                batch = {
                    k: v.pin_memory() if isinstance(v, torch.Tensor) else v
                    for k, v in batch.items()
                }
        return batch

    def __iter__(self) -> Iterator[dict[str, Any]]:
        stream = self._stream()
        if self.cfg.num_workers == 0:
            for epoch, cache, bp in stream:
                batch = self._materialise(epoch, cache, bp)
                self._epoch, self._emitted = epoch, bp.index + 1
                yield batch
            return
        pool = ThreadPoolExecutor(
            self.cfg.num_workers, thread_name_prefix="sama-loader", initializer=_one_torch_thread
        )
        pending: deque = deque()
        try:
            for _ in range(self.cfg.prefetch):
                item = next(stream)
                pending.append((item, pool.submit(self._materialise, *item)))
            while pending:
                (epoch, _, bp), fut = pending.popleft()
                batch = fut.result()
                item = next(stream)
                pending.append((item, pool.submit(self._materialise, *item)))
                self._epoch, self._emitted = epoch, bp.index + 1
                yield batch
        finally:
            for _, fut in pending:
                fut.cancel()
            pool.shutdown(wait=True, cancel_futures=True)
