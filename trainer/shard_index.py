"""The shard index of the streaming loader: open shards, check them, decode rows.

At start-up every shard's footer and a few small columns (tensor shapes and dtypes, buckets,
judge scores) are read; nothing else is until a batch needs it. Each shard goes through the
same checks as ``sama validate`` (``datasets_spec.checks.read_footer``: spec, schema, bounded
provenance, row-group sizes under the caps, all before any column is read; then
``datasets_spec.cells.check_cells`` on the shapes and dtypes, and the footer's byte counts
against what the shapes need), so a hostile or broken shard is refused at start-up, with every
problem of every shard on one line each, before anything it describes is allocated. Its spec
and provenance are checked against the trainer's expectation and the other shards
(CONVENTIONS.md rule 3). Rows are then described by ``Unit`` (row group + kept rows + bucket
key ids), which is all ``trainer.batching`` plans from. ``decode_rows`` turns a row group read
later into samples (``trainer/shard_rows.py``).

A clips root with a ``dedup/v1`` table (``sama dedup``: ``ROOT/dedup/``, published
``ROOT/data/dedup/``) has its marked clips left out of the index (``data.skip_duplicates``, on
by default): the table is checked like a shard (declared spec, schema, bounded provenance,
row-group sizes) before its ``clip_id`` column is read, and each shard's ``clip_id`` column is
read with the planning columns.

Footers are read by a thread pool (``data.index_workers``): on an object store start-up is
bounded by the request latency divided by the pool size, not the shard count times it. With
``data.cache_dir`` (``trainer/shard_cache.py``) the index is built once per node and remote
shards are fetched once per node.

Legend: C latent channels, T latent frames, H/W latent height/width, N anchor frames,
K tokens per anchor (65), D SigLIP width, L text tokens, E text width.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, is_dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from datasets_spec.cells import check_cells
from datasets_spec.checks import Limits, read_footer, tensor_bytes_problem
from datasets_spec.provenance import COMPATIBILITY_KEYS, compare, lookup, stable_hash
from sama.errors import ConfigError
from sama.shards import is_local, list_shards, url_to_fs
from trainer.batching import BucketKey, Unit
from trainer.dedup_marks import Marks, load_marks
from trainer.shard_cache import ShardCache, locked, version_of

SCORE_KEYS = ("if", "vq", "cp", "mc")  # judge scores of pairs/v1 (SAMA.md §4 data filtering)
TENSORS = {
    "clips": ("latents", "anchor_tokens"),
    "pairs": ("target_latents", "source_latents", "anchor_tokens"),
}
MAX_LINES = 20  # problem lines in the start-up refusal (the rest are counted)


@dataclass
class ShardInfo:
    uri: str
    fs: Any
    path: str
    kind: str  # "clips" | "pairs"
    source: int
    row_groups: list[int]  # rows per row group
    provenance: dict
    metadata: pq.FileMetaData | None  # the parsed footer, reused by every row-group read
    size: int = 0  # bytes (the cache checks a fetched copy against it)
    version: str = ""  # ETag / LFS sha256 / mtime: a changed shard is fetched again
    cache: ShardCache | None = None  # remote shards are read from a node-local copy
    duplicates: int = 0  # rows left out as marked near-duplicates (dedup table)

    def open(self):
        """A binary file object of the shard (the node-local copy when cached)."""
        if self.cache is not None and not is_local(self.fs):
            return open(
                self.cache.local(self.fs, self.path, self.uri, self.size, self.version), "rb"
            )
        return self.fs.open(self.path, "rb")

    def to_json(self) -> dict:
        return {
            "uri": self.uri,
            "kind": self.kind,
            "source": self.source,
            "row_groups": self.row_groups,
            "provenance": self.provenance,
            "size": self.size,
            "version": self.version,
            "rows": sum(self.row_groups),
            "duplicates": self.duplicates,
        }


class ShardRefused(Exception):
    """Problem lines of one shard (each names the column, row group or row)."""

    def __init__(self, uri: str, lines: list[str]) -> None:
        super().__init__(uri)
        self.uri, self.lines = uri, lines


def shard_uris(src: Any, i: int) -> list[str]:
    if src.uri.endswith(".parquet"):
        return [src.uri]
    found = list_shards(src.uri, src.kind)
    if not found:
        raise ConfigError(
            f"data.sources[{i}]: no {src.kind} shards under {src.uri!r} (expected "
            f"{src.uri.rstrip('/')}/{src.kind}/*.parquet, or data/{src.kind}/ of a published repo)"
        )
    return found


def check_provenance(uri: str, prov: dict | None, spec_id: str, expected: dict | None) -> None:
    """Refuse a shard whose spec or provenance disagrees with the trainer (``ConfigError``).

    Compared: ``COMPATIBILITY_KEYS`` other than the spec, wherever ``expected`` sets a value
    (same layout as the provenance: ``{"vae": {"id", "config_hash"}, "siglip": {...},
    "latent_norm": {"kind"}, "anchor_policy": {"tokens_per_anchor"}}``).
    """
    if prov is None:
        raise ConfigError(f"shard {uri}: no `sama.provenance` metadata; rebuild it with sama")
    if prov.get("spec") != spec_id:
        raise ConfigError(
            f"shard {uri}: provenance spec {prov.get('spec')!r}, expected {spec_id!r}"
        )
    keys = [
        (p, n)
        for p, n in COMPATIBILITY_KEYS
        if p != "spec" and lookup(expected or {}, p) is not None
    ]
    diffs = compare(expected or {}, prov, keys)
    if diffs:
        raise ConfigError(
            f"shard {uri} was built for other models than the trainer's (trainer != shard): "
            + "; ".join(diffs)
            + ". Rebuild the dataset with the trainer's encoders or fix the trainer's model config."
        )


def _checked_columns(pf: pq.ParquetFile, spec, names: list[str], uri: str) -> pa.Table:
    """The small planning columns, after the tensor cells' shapes and dtypes passed."""
    tbl = pf.read(columns=names)
    lines: list[str] = []
    starts = np.cumsum([0] + [pf.metadata.row_group(j).num_rows for j in range(pf.num_row_groups)])
    for t in spec.tensor_columns:
        report = check_cells(tbl, t)
        lines += [msg for _, msg in report.problems]
        if report.problems:
            continue
        for j in range(pf.num_row_groups):
            needed = int(report.nbytes[starts[j] : starts[j + 1]].sum())
            problem = tensor_bytes_problem(pf.metadata, j, t.name, needed)
            if problem:
                lines.append(problem)
    if lines:
        raise ShardRefused(uri, lines)
    return tbl


def open_shard(
    uri: str,
    src: Any,
    si: int,
    expected: dict | None,
    limits: Limits = Limits(),
    marks: Marks | None = None,
):
    """Checks + the small planning columns -> (ShardInfo, key vectors [n, 14], kept mask);
    ``marks``: clip ids left out (near-duplicates). Raises ``ShardRefused`` (or
    ``ConfigError`` for a provenance mismatch)."""
    fs, path = url_to_fs(uri)
    info = fs.info(path)
    with fs.open(path, "rb") as f:
        pf = pq.ParquetFile(f)
        footer = read_footer(pf, src.kind, limits)
        if footer.problems:
            raise ShardRefused(uri, [msg for _, msg in footer.problems])
        spec = footer.spec
        check_provenance(uri, footer.provenance, spec.id, expected)
        names = [c for t in spec.tensor_columns for c in (f"{t.name}_shape", f"{t.name}_dtype")]
        names += ["bucket_width", "bucket_height"]
        names += [f"score_{k}" for k in (src.min_scores or {})]
        names += ["clip_id"] if marks is not None else []
        tbl = _checked_columns(pf, spec, names, uri)
        sizes = [pf.metadata.row_group(j).num_rows for j in range(pf.num_row_groups)]
    vec, keep = _planning_vectors(tbl, src)
    marked = np.zeros(len(keep), dtype=bool)
    if marks is not None:
        marked = np.array([c in marks.clip_ids for c in tbl.column("clip_id").to_pylist()], bool)
        keep &= ~marked
    shard = ShardInfo(
        uri,
        fs,
        path,
        src.kind,
        si,
        sizes,
        footer.provenance,
        pf.metadata,
        int(info.get("size") or 0),
        version_of(info),
        duplicates=int(marked.sum()),
    )
    return shard, vec, keep


def _planning_vectors(tbl: pa.Table, src: Any) -> tuple[np.ndarray, np.ndarray]:
    n = tbl.num_rows
    shapes = []
    for t in TENSORS[src.kind]:
        ndim = 3 if t == "anchor_tokens" else 4
        arr = tbl.column(f"{t}_shape").combine_chunks().flatten()
        shapes.append(arr.to_numpy(zero_copy_only=False).astype(np.int64).reshape(-1, ndim))
    if src.kind == "clips":
        shapes.insert(1, np.full((n, 4), -1, dtype=np.int64))  # no stored source
    kind_code = np.full((n, 1), 0 if src.kind == "clips" else 1, dtype=np.int64)
    buckets = np.stack([tbl.column(c).to_numpy() for c in ("bucket_width", "bucket_height")], 1)
    vec = np.concatenate([kind_code, buckets.astype(np.int64), *shapes], axis=1)
    keep = np.ones(n, dtype=bool)
    if src.media != "any":
        keep &= (vec[:, 4] > 1) == (src.media == "video")  # vec[:, 4] = target T
    for k, thr in (src.min_scores or {}).items():  # a missing score fails the threshold
        keep &= (
            np.nan_to_num(tbl.column(f"score_{k}").to_numpy(zero_copy_only=False), nan=-1) >= thr
        )
    return vec, keep


def _bucket_key(vec: np.ndarray) -> BucketKey:
    v = [int(x) for x in vec]
    target, source, anchor = tuple(v[3:7]), tuple(v[7:11]), tuple(v[11:14])
    if v[0] == 0:
        return BucketKey("clip", v[1], v[2], (target, anchor))
    return BucketKey("pair", v[1], v[2], (target, source, anchor))


def _refusal(refused: list[ShardRefused], total: int) -> ConfigError:
    lines = [f"shard {r.uri}: {line}" for r in refused for line in r.lines]
    shown = lines[:MAX_LINES]
    if len(lines) > MAX_LINES:
        shown.append(f"... and {len(lines) - MAX_LINES} more")
    return ConfigError(
        f"refusing the training data: {len(lines)} problem(s) in {len(refused)} of {total} "
        "shard(s), found at start-up before reading any tensor (run `sama validate ROOT` for "
        "a full report):\n  " + "\n  ".join(shown)
    )


def _open_all(jobs, expected, limits, workers, marks):
    """``open_shard`` for every (uri, source, index), ``workers`` at a time, in order."""

    def one(job):
        uri, src, si = job
        try:
            return open_shard(uri, src, si, expected, limits, marks.get(si))
        except ShardRefused as e:
            return e
        except (pa.ArrowException, OSError, EOFError) as e:
            return ShardRefused(uri, [f"cannot read shard (truncated or not Parquet): {e}"])

    if workers <= 1 or len(jobs) <= 1:
        results = [one(j) for j in jobs]
    else:
        with ThreadPoolExecutor(min(workers, len(jobs)), thread_name_prefix="sama-index") as pool:
            results = list(pool.map(one, jobs))
    refused = [r for r in results if isinstance(r, ShardRefused)]
    if refused:
        raise _refusal(refused, len(jobs))
    return results


def _index_key(jobs, expected, limits, marks) -> str:
    def stat(job):
        fs, path = url_to_fs(job[0])
        info = fs.info(path)
        return [job[0], job[2], int(info.get("size") or 0), version_of(info)]

    with ThreadPoolExecutor(16, thread_name_prefix="sama-stat") as pool:
        listing = list(pool.map(stat, jobs))
    sources = [asdict(j[1]) if is_dataclass(j[1]) else repr(j[1]) for j in jobs]
    dedup = {si: m.files for si, m in sorted(marks.items())}
    return stable_hash(
        {
            "listing": listing,
            "sources": sources,
            "expected": expected,
            "limits": asdict(limits),
            "dedup": dedup,
        }
    )


def _from_cache(entries, vec, keep, cache):
    shards, vecs, keeps, at = [], [], [], 0
    for e in entries:
        fs, path = url_to_fs(e["uri"])
        shards.append(
            ShardInfo(
                e["uri"],
                fs,
                path,
                e["kind"],
                e["source"],
                e["row_groups"],
                e["provenance"],
                None,
                e["size"],
                e["version"],
                cache,
                e.get("duplicates", 0),
            )
        )
        vecs.append(vec[at : at + e["rows"]])
        keeps.append(keep[at : at + e["rows"]])
        at += e["rows"]
    return shards, vecs, keeps


def _open_indexed(jobs, expected, limits, workers, cache, marks):
    if cache is None:
        opened = _open_all(jobs, expected, limits, workers, marks)
        return [o[0] for o in opened], [o[1] for o in opened], [o[2] for o in opened]
    key = _index_key(jobs, expected, limits, marks)
    with locked(cache.root / "index" / f"{key}.lock"):  # one process of the node builds it
        hit = cache.load_index(key)
        if hit is not None:
            return _from_cache(*hit, cache)
        opened = _open_all(jobs, expected, limits, workers, marks)
        for shard, _, _ in opened:
            shard.cache = cache
        cache.store_index(
            key,
            [o[0].to_json() for o in opened],
            np.concatenate([o[1] for o in opened]).astype(np.int64),
            np.concatenate([o[2] for o in opened]),
        )
    return [o[0] for o in opened], [o[1] for o in opened], [o[2] for o in opened]


def build_index(
    sources: Sequence[Any],
    expected: dict | None,
    *,
    limits: Limits = Limits(),
    workers: int = 16,
    cache: ShardCache | None = None,
    skip_duplicates: bool = True,
) -> tuple[list[ShardInfo], list[Unit], list[BucketKey]]:
    """Open every shard of every source (``SourceConfig``s) -> (shards, units, bucket keys);
    ``skip_duplicates``: leave out the clips a source root's dedup table marks
    (``ShardInfo.duplicates`` counts them).

    Raises ``ConfigError`` listing every refused shard's problems, or naming the shard for a
    provenance mismatch, or a refused dedup table, or a filter that leaves nothing."""
    jobs = [(uri, src, si) for si, src in enumerate(sources) for uri in shard_uris(src, si)]
    marks = {}
    if skip_duplicates:
        found = {si: load_marks(src, si, limits) for si, src in enumerate(sources)}
        marks = {si: m for si, m in found.items() if m is not None}
    shards, vecs, keeps = _open_indexed(jobs, expected, limits, workers, cache, marks)
    keys = [(p, n) for p, n in COMPATIBILITY_KEYS if p != "spec"]
    for shard in shards[1:]:
        diffs = compare(shards[0].provenance, shard.provenance, keys)
        if diffs:
            raise ConfigError(
                f"shard {shard.uri} is inconsistent with shard {shards[0].uri}: " + "; ".join(diffs)
            )
    kept = [v[k] for v, k in zip(vecs, keeps, strict=True)]
    if not any(len(v) for v in kept):
        raise ConfigError(
            "data.sources: no rows left after the media/min_scores filters and "
            "the dedup table (data.skip_duplicates)"
        )
    uniq, inverse = np.unique(np.concatenate(kept), axis=0, return_inverse=True)
    keys = [_bucket_key(u) for u in uniq]
    units, at = [], 0
    for si, (shard, keep) in enumerate(zip(shards, keeps, strict=True)):
        ids = np.full(len(keep), -1, dtype=np.int64)
        ids[keep] = inverse.reshape(-1)[at : at + int(keep.sum())]
        at += int(keep.sum())
        start = 0
        for rg, size in enumerate(shard.row_groups):
            rows = np.flatnonzero(keep[start : start + size])
            if len(rows):
                units.append(Unit(shard.source, si, rg, rows, ids[start + rows]))
            start += size
    return shards, units, keys
