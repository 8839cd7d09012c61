"""``sama dedup ROOT``: mark near-duplicate clips of a built root in a ``dedup/v1`` table.

The same shot uploaded twice, re-encoded or resized gives clips SigLIP sees as one; training
on both over-weights it. Every clip row already holds its SigLIP anchor tokens (SAMA.md
section 2), so no pixel is decoded and no model loaded here:

1. take the root's lease (``pipelines.engine.lease``): a build running into the root makes
   dedup refuse, and no build starts while dedup writes;
2. one Ray task per clip shard (``runner.map_files``) reads its footer, then only ``clip_id``,
   ``anchor_tokens`` (+ shape/dtype) and the keep-rule columns, one row group at a time (never
   the latents), and returns one embedding per clip (``sama.dedup.clip_embedding``: the mean
   of the anchors' global tokens), float16 to halve the transfer;
3. the driver gathers the N x D embeddings and runs ``sama.dedup.find_duplicates`` (faiss);
4. the table is written under ``ROOT/dedup/`` (``open_atomic``: whole or not at all), its
   provenance saying how (threshold, method, keep rule, SigLIP, the clips compared). Shards
   are never rewritten. An existing table is replaced only with ``overwrite``.

Keep rule (``KEEP_RULE``): in a group of near-duplicates the clip kept is the one from the
largest source (``orig_width x orig_height``), then the longest (``num_frames / fps``), then
the smallest ``clip_id``: the original beats a downscaled re-upload, and the choice depends
only on the set of clips.

Legend: N clips, D SigLIP width, A anchors per clip, K tokens per anchor (65).
"""

from __future__ import annotations

import hashlib
import json
import posixpath
import sys
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from types import SimpleNamespace

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

import sama
from datasets_spec import DEDUP_V1, SchemaError
from datasets_spec.base import PROVENANCE_KEY, SPEC_KEY
from datasets_spec.cells import check_cells
from datasets_spec.checks import Limits, read_footer
from datasets_spec.provenance import stable_hash
from datasets_spec.tensors import decode_array
from pipelines.dataset.dedup_table import DEDUP_DIR, dedup_paths
from pipelines.engine import runner
from pipelines.engine.config import EngineConfig
from pipelines.engine.lease import hold
from pipelines.engine.writer import open_atomic
from sama.dedup import DedupConfig, Duplicate, clip_embedding, find_duplicates
from sama.errors import SamaError
from sama.redact import redact_url
from sama.shards import list_shards, url_to_fs

KEEP_RULE = "largest source (orig_width x orig_height), then longest (num_frames / fps), then smallest clip_id"
READ_COLUMNS = ("clip_id", "anchor_tokens", "anchor_tokens_shape", "anchor_tokens_dtype",
                "orig_width", "orig_height", "num_frames", "fps")  # fmt: skip
ROWS_PER_FILE = 1_000_000  # dedup/part-dedup-<digest>-<k>.parquet beyond this
ROW_GROUP_ROWS = 65_536


class DedupError(SamaError):
    """The root cannot be deduplicated as asked (the message says why and what to do)."""


@dataclass
class DedupRun:
    """How ``sama dedup`` runs: the search (``dedup``), Ray (``engine``), the lease."""

    dedup: DedupConfig = field(default_factory=DedupConfig)
    engine: EngineConfig = field(default_factory=EngineConfig)
    overwrite: bool = False
    num_cpus_per_task: float = 1.0


@dataclass
class DedupResult:
    root: str
    clips: int
    shards: int
    duplicates: int
    groups: int
    threshold: float
    method: str
    wall_s: float
    files: list[str]

    def format(self) -> str:
        return (
            f"sama dedup done in {self.wall_s:.1f}s: {self.clips} clips in {self.shards} shards, "
            f"{self.duplicates} marked as near-duplicates of {self.groups} kept clips "
            f"(threshold {self.threshold:g})\n  method: {self.method}\n  keep rule: {KEEP_RULE}\n"
            f"  table: {', '.join(self.files)}"
        )


# ---- in the Ray workers ----------------------------------------------------------------------
def shard_embeddings(uri: str) -> dict:
    """One clip shard -> its clip ids, embeddings (float16, N x D), keep-rule keys and SigLIP
    provenance; ``{"uri", "problem"}`` instead when it cannot be used (never raises on data)."""
    try:
        fs, path = url_to_fs(uri)
        with fs.open(path, "rb") as f:
            return _embed(pq.ParquetFile(f), uri)
    except (pa.ArrowException, OSError, EOFError, SchemaError, ValueError) as e:
        return {"uri": uri, "problem": f"cannot read: {type(e).__name__}: {e}"}


def _embed(pf: pq.ParquetFile, uri: str) -> dict:
    if "anchor_tokens" not in pf.schema_arrow.names:
        return {"uri": uri, "problem": "has no anchor_tokens column: dedup compares the SigLIP "
                "anchor tokens, so rebuild these clips with the anchor encoder"}  # fmt: skip
    footer = read_footer(pf, "clips", Limits())
    if not footer.ok:
        return {"uri": uri, "problem": "; ".join(m for _, m in footer.problems)}
    spec = footer.spec
    anchors = next(t for t in spec.tensor_columns if t.name == "anchor_tokens")
    ids: list[str] = []
    emb, pixels, seconds = [], [], []
    for g in range(pf.num_row_groups):
        t = pf.read_row_group(g, columns=list(READ_COLUMNS))
        if t.column("anchor_tokens").null_count:
            return {"uri": uri, "problem": f"row group {g}: clips without anchor tokens (null "
                    "anchor_tokens): rebuild them with the anchor encoder"}  # fmt: skip
        problems = check_cells(t, anchors).problems
        if problems:
            return {"uri": uri, "problem": "; ".join(m for _, m in problems[:3])}
        cells = zip(*(t.column(c).to_pylist() for c in READ_COLUMNS[1:4]), strict=True)
        emb += [clip_embedding(decode_array(b, s, d)) for b, s, d in cells]
        ids += t.column("clip_id").to_pylist()
        w, h = t.column("orig_width").to_numpy(), t.column("orig_height").to_numpy()
        pixels.append(w.astype(np.int64) * h.astype(np.int64))
        frames, fps = t.column("num_frames").to_numpy(), t.column("fps").to_numpy()
        seconds.append(frames / np.maximum(fps, 1e-9))
    d = emb[0].shape[0] if emb else 0
    return {
        "uri": uri,
        "spec": spec.id,
        "siglip": (footer.provenance or {}).get("siglip"),
        "clip_ids": ids,
        "emb": np.stack(emb).astype(np.float16) if emb else np.zeros((0, d), np.float16),
        "pixels": np.concatenate(pixels) if pixels else np.zeros(0, np.int64),
        "seconds": np.concatenate(seconds) if seconds else np.zeros(0),
    }


# ---- the driver ------------------------------------------------------------------------------
def run_dedup(root: str, run: DedupRun | None = None, *, progress: bool = True) -> DedupResult:
    """Mark the near-duplicate clips of ``root`` (module docstring); raises ``DedupError`` (or
    ``LeaseHeld``) without writing anything when it cannot."""
    run = run or DedupRun()
    run.dedup.validate()
    run.engine.validate()
    t0 = time.monotonic()
    fs, path = url_to_fs(root)
    uri = redact_url(root)
    e = run.engine
    with hold(fs, path, "dedup", e.lease_ttl_s, uri, e.take_over_lease):
        shards = list_shards(root, "clips")
        if not shards:
            raise DedupError(f"no clip shards under {uri} (expected {uri}/clips/*.parquet): "
                             "build clips first (`sama build CONFIG output.uri=ROOT`)")  # fmt: skip
        old = dedup_paths(root)
        if old and not run.overwrite:
            raise DedupError(f"{uri} already has a dedup table ({', '.join(old)}): pass "
                             "--overwrite to replace it")  # fmt: skip
        parts = _read_all(shards, run, progress)
        ids, emb_ND, priority, prov_clips = _gather(parts)
        rows = find_duplicates(ids, emb_ND.astype(np.float32), run.dedup, priority)
        prov = _provenance(run.dedup, len(ids), rows, prov_clips, shards)
        files = _write(fs, path, rows, prov)
        written = {posixpath.basename(x) for x in files}
        for p in old:  # the new table is whole: now drop what it replaces
            if posixpath.basename(p) not in written:
                fs.rm(url_to_fs(p)[1])
    return DedupResult(uri, len(ids), len(shards), len(rows), prov["groups"], run.dedup.threshold,
                       prov["method"], time.monotonic() - t0, files)  # fmt: skip


def _read_all(shards: list[str], run: DedupRun, progress: bool) -> list[dict]:
    from tqdm import tqdm

    bar = tqdm(total=len(shards), desc="dedup: read anchor tokens", unit="shard",
               file=sys.stderr, disable=not progress, mininterval=1.0)  # fmt: skip
    cfg = SimpleNamespace(engine=run.engine)
    try:
        with runner.ray_session(cfg):
            return runner.map_files(shard_embeddings, shards, num_cpus=run.num_cpus_per_task,
                                    executor=run.engine.executor,
                                    on_result=lambda i, r: bar.update(1))  # fmt: skip
    finally:
        bar.close()


def _gather(parts: list[dict]) -> tuple[list[str], np.ndarray, np.ndarray, dict]:
    """Clip ids, embeddings, keep priorities; ``DedupError`` listing every unusable shard."""
    bad = [f"{p['uri']}: {p['problem']}" for p in parts if "problem" in p]
    if bad:
        raise DedupError(f"{len(bad)} of {len(parts)} clip shard(s) cannot be compared, nothing "
                         "was written:\n  " + "\n  ".join(bad[:20]))  # fmt: skip
    sigs = {json.dumps(p["siglip"], sort_keys=True) for p in parts if p["clip_ids"]}
    if len(sigs) > 1:
        raise DedupError(f"the clip shards were encoded by different SigLIP models ({sorted(sigs)}"
                         "): their anchor tokens are not comparable")  # fmt: skip
    ids = [c for p in parts for c in p["clip_ids"]]
    if not ids:
        raise DedupError("the clip shards hold no clips")
    if len(set(ids)) != len(ids):
        raise DedupError("clip ids repeat across shards (run `sama validate ROOT`)")
    emb_ND = np.concatenate([p["emb"] for p in parts])
    keys = np.stack([np.concatenate([p["pixels"] for p in parts]).astype(np.float64),
                     np.concatenate([p["seconds"] for p in parts])], axis=1)  # fmt: skip
    # dense rank of (pixels, seconds): higher = kept first; ties fall to the smallest clip_id
    _, rank = np.unique(keys, axis=0, return_inverse=True)
    clips = {
        "specs": sorted({p["spec"] for p in parts}),
        "siglip": json.loads(sigs.pop()) if sigs else None,
    }
    return ids, emb_ND, rank.reshape(-1).astype(np.float64), clips


def _provenance(
    cfg: DedupConfig, n: int, rows: list[Duplicate], clips: dict, shards: list[str]
) -> dict:
    names = sorted(posixpath.basename(s) for s in shards)
    return {
        "spec": DEDUP_V1.id,
        "sama_version": sama.__version__,
        "method": cfg.method(n),
        "threshold": cfg.threshold,
        "keep_rule": KEEP_RULE,
        "config": asdict(cfg),
        "siglip": clips["siglip"],
        "clips": {
            "specs": clips["specs"],
            "shards": len(shards),
            "rows": n,
            "listing": stable_hash(names),
        },  # fmt: skip
        "duplicates": len(rows),
        "groups": len({r.duplicate_of for r in rows}),
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def _write(fs, root: str, rows: list[Duplicate], prov: dict) -> list[str]:
    """The table as ``ROOT/dedup/part-dedup-<digest>[-k].parquet`` (one file even when empty:
    it records that dedup ran, and how); returns the paths relative to ROOT."""
    table = DEDUP_V1.from_rows([asdict(r) for r in rows])
    DEDUP_V1.validate(table)
    meta = {
        SPEC_KEY: DEDUP_V1.id.encode(),
        PROVENANCE_KEY: json.dumps(prov, sort_keys=True).encode(),
    }
    schema = DEDUP_V1.schema.with_metadata(meta)
    blob = json.dumps([prov, table.column("clip_id").to_pylist()], sort_keys=True).encode()
    digest = hashlib.sha1(blob).hexdigest()[:20]
    starts = list(range(0, max(1, table.num_rows), ROWS_PER_FILE))
    out = []
    for k, start in enumerate(starts):
        name = f"part-dedup-{digest}{'' if len(starts) == 1 else f'-{k}'}.parquet"
        rel = posixpath.join(DEDUP_DIR, name)
        part = table.slice(start, ROWS_PER_FILE).cast(schema)
        with (
            open_atomic(fs, posixpath.join(root, rel)) as f,
            pq.ParquetWriter(f, schema, compression="zstd") as w,
        ):
            w.write_table(part, row_group_size=ROW_GROUP_ROWS)
        out.append(rel)
    return out
