"""The clip build's listing: a directory, a glob, one video, or a manifest, streamed in chunks.

OUT (the inputs table, ``engine/listing.py``): ``video_id``, ``source_uri``,
``manifest_caption``, row accounting (1 row per input until the clip cutter says otherwise)
and the error fields: a manifest row without a video, a broken line, or an entry outside the
allowed roots (``sama.confine``: ``input.allowed_roots`` / ``allowed_schemes``, default the
manifest's own folder and scheme) is an error row, accounted for like any other input.

Any fsspec URI works (``s3://``, ``gs://``, ``hf://``, ``memory://``...). A manifest is read in
chunks (``sama.manifests``), never whole; a directory is listed one sub-folder per thread.
``video_id`` is the manifest ``id`` or a hash of the URI (``datasets_spec.provenance.stable_hash``).
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import fsspec
import pyarrow as pa

from datasets_spec.provenance import stable_hash
from pipelines.clips.columns import CLIP_COLUMNS, clip_columns
from pipelines.config import MANIFEST_EXTENSIONS
from pipelines.engine.apply import rows_to_table
from pipelines.engine.stage import ACCOUNTING_COLUMNS, ERROR_COLUMNS, schema_for
from sama.confine import Confinement, resolve
from sama.errors import ConfigError, ErrorKind

STAGE = "list_inputs"
GLOB_CHARS = "*?["
OUTPUTS = (*clip_columns("video_id", "source_uri"), "manifest_caption", *ACCOUNTING_COLUMNS,
           *ERROR_COLUMNS)  # fmt: skip
CHUNK = 8192
LIST_THREADS = 16
_FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".json": "json", ".parquet": "parquet"}


def list_inputs(cfg: Any) -> Iterator[pa.Table]:
    """The inputs of ``cfg.input`` as typed tables of ``OUTPUTS`` (at most ``CHUNK`` rows)."""
    icfg = cfg.input
    fs, path = fsspec.core.url_to_fs(icfg.uri, **icfg.storage_options)
    schema = schema_for(OUTPUTS, CLIP_COLUMNS)
    if path.lower().endswith(MANIFEST_EXTENSIONS) and fs.exists(path) and not fs.isdir(path):
        rows = _from_manifest(cfg, fs, path)
    else:
        rows = (_row(uri, None, None) for uri in _list_files(cfg, fs, path))
    chunk: list[dict] = []
    for n, row in enumerate(rows, start=1):
        chunk.append(row)
        if len(chunk) >= CHUNK:
            yield rows_to_table(chunk, schema)
            chunk = []
        if icfg.limit and n >= icfg.limit:
            break
    if chunk:
        yield rows_to_table(chunk, schema)


# ---- directories ---------------------------------------------------------------------------
def _list_files(cfg: Any, fs: Any, path: str) -> Iterator[str]:
    """Videos under ``path`` (sorted), the sub-folders listed in parallel."""
    exts = tuple(e.lower() for e in cfg.input.extensions)

    def keep(found: list[str]) -> list[str]:
        return sorted(p for p in found if p.lower().endswith(exts) and not _hidden(p))

    if any(ch in path for ch in GLOB_CHARS):
        groups = [keep(fs.glob(path))]
    elif fs.isdir(path):
        entries = fs.ls(path, detail=True)
        files = keep([e["name"] for e in entries if e["type"] != "directory"])
        dirs = sorted(e["name"] for e in entries if e["type"] == "directory" and not _hidden(e["name"]))
        with ThreadPoolExecutor(LIST_THREADS) as pool:
            groups = [files, *pool.map(lambda d: keep(fs.find(d)), dirs)]
    elif fs.exists(path):
        groups = [[path]]
    else:
        raise ConfigError(f"input.uri={cfg.input.uri!r} does not exist")
    if not any(groups):
        raise ConfigError(f"input.uri={cfg.input.uri!r} holds no videos with extensions {list(exts)}")
    for group in groups:
        for p in group:
            yield _full_uri(fs, p)


# ---- manifests -----------------------------------------------------------------------------
def _from_manifest(cfg: Any, fs: Any, path: str) -> Iterator[dict]:
    from sama.manifests import BadRecord, iter_records

    icfg = cfg.input
    uri = _full_uri(fs, path)
    confine = Confinement.for_manifest(uri, icfg.allowed_roots, icfg.allowed_schemes)
    base, local = posixpath.dirname(path), _is_local(fs)
    base_uri = base if local else fs.unstrip_protocol(base)
    fmt = _FORMATS[posixpath.splitext(path.lower())[1]]
    i = 0
    for n, records in enumerate(iter_records(uri, fmt, icfg.storage_options, CHUNK)):
        if n == 0:
            _check_columns(cfg, records)
        for rec in records:
            if isinstance(rec, BadRecord):
                yield _bad(stable_hash(f"{icfg.uri}#{i}"), f"{icfg.uri}#{i}",
                           ErrorKind.BAD_MANIFEST_ROW, f"manifest row {i}: {rec.message}")  # fmt: skip
                i += 1
                continue
            yield _manifest_row(cfg, rec, i, base_uri, local, confine)
            i += 1


def _manifest_row(cfg: Any, rec: dict, i: int, base: str, local: bool, confine: Confinement) -> dict:
    icfg = cfg.input
    video = rec.get(icfg.video_column)
    uri = resolve(base, str(video).strip(), local) if video not in (None, "") else None
    vid = rec.get(icfg.id_column)
    vid = str(vid) if vid not in (None, "") else stable_hash(uri or f"{icfg.uri}#{i}")
    if uri is None:
        return _bad(vid, f"{icfg.uri}#{i}", ErrorKind.BAD_MANIFEST_ROW, f"manifest row {i} has no video")
    refused = confine.check(uri)
    if refused:
        return _bad(vid, uri, ErrorKind.NOT_ALLOWED, f"manifest row {i}: {refused}")
    caption = rec.get(icfg.caption_column)
    return _row(uri, vid, None if caption is None else str(caption))


def _check_columns(cfg: Any, records: list) -> None:
    icfg = cfg.input
    rows = [r for r in records if isinstance(r, dict)]
    if not rows:
        return
    if not any(icfg.video_column in r for r in rows):
        raise ConfigError(f"manifest {icfg.uri!r} has no {icfg.video_column!r} column (columns: "
                          f"{sorted(rows[0])}); set input.video_column")  # fmt: skip
    if cfg.caption.source == "manifest" and not any(icfg.caption_column in r for r in rows):
        raise ConfigError(
            f"caption.source=manifest but manifest {icfg.uri!r} has no {icfg.caption_column!r} "
            "column; set input.caption_column or caption.source"
        )


def _row(uri: str, video_id: str | None, caption: str | None) -> dict:
    return {"video_id": video_id or stable_hash(uri), "source_uri": uri,
            "manifest_caption": caption, "input_rows": 1, "row_weight": 1}  # fmt: skip


def _bad(video_id: str, uri: str, kind: ErrorKind, message: str) -> dict:
    return {**_row(uri, video_id, None), "error_stage": STAGE, "error_kind": kind.value,
            "error_message": message, "error_time": datetime.now(UTC)}  # fmt: skip


def _hidden(path: str) -> bool:
    return posixpath.basename(path).startswith(".")


def _is_local(fs: Any) -> bool:
    protocol = fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,)
    return "file" in protocol or "local" in protocol


def _full_uri(fs: Any, path: str) -> str:
    """Local files stay plain paths (decord and native PyAV I/O want them); others get a
    protocol so a worker on another machine opens the same object."""
    return path if _is_local(fs) else fs.unstrip_protocol(path)
