"""ListInputs: the build's inputs from a directory, a glob, one video, or a manifest.

IN: nothing (runs once, in the driver, before launch: resume filters the list before any
decoding, and ``summary.json`` needs every input). OUT: ``video_id``, ``source_uri``,
``manifest_caption``, row accounting, error fields (a manifest row without a video becomes an
error row). Fan-out: 1 row per input. Resources: the driver.

Any fsspec URI works (``s3://``, ``gs://``, ``hf://``, ``memory://``...): listing and manifests
are read through fsspec, and each ``source_uri`` is a full URI the workers open through fsspec.
``video_id`` is the manifest ``id`` or a hash of the URI (``datasets_spec.provenance.stable_hash``).
"""

from __future__ import annotations

import io
import json
import posixpath
from typing import Any

import fsspec

from datasets_spec.provenance import stable_hash
from pipelines.config import MANIFEST_EXTENSIONS
from pipelines.engine.stage import (
    ACCOUNTING_COLUMNS,
    ERROR_COLUMNS,
    Batch,
    Row,
    Stage,
    clip_columns,
)
from sama.errors import ConfigError, ErrorKind, SampleError

GLOB_CHARS = "*?["


class ListInputs(Stage):
    name = "list_inputs"
    inputs = ()
    outputs = (
        *clip_columns("video_id", "source_uri"),
        "manifest_caption",
        *ACCOUNTING_COLUMNS,
        *ERROR_COLUMNS,
    )

    def process(self, batch: Batch = ()) -> Batch:
        """The listing (``batch`` is ignored: this is the source of the pipeline)."""
        icfg = self.cfg.input
        fs, path = fsspec.core.url_to_fs(icfg.uri, **icfg.storage_options)
        if path.lower().endswith(MANIFEST_EXTENSIONS) and _is_file(fs, path):
            rows = self._from_manifest(fs, path)
        else:
            rows = [self._row(uri, None, None) for uri in self._list_files(fs, path)]
        if icfg.limit:
            rows = rows[: icfg.limit]
        return rows

    # ---- listing -------------------------------------------------------------------------
    def _list_files(self, fs: Any, path: str) -> list[str]:
        exts = tuple(e.lower() for e in self.cfg.input.extensions)
        if any(ch in path for ch in GLOB_CHARS):
            found = fs.glob(path)
        elif fs.isdir(path):
            found = fs.find(path)
        elif fs.exists(path):
            found = [path]
        else:
            raise ConfigError(f"input.uri={self.cfg.input.uri!r} does not exist")
        files = sorted(p for p in found if p.lower().endswith(exts) and not _hidden(p))
        if not files:
            raise ConfigError(
                f"input.uri={self.cfg.input.uri!r} holds no videos with extensions {list(exts)}"
            )
        return [_full_uri(fs, p) for p in files]

    def _from_manifest(self, fs: Any, path: str) -> Batch:
        icfg = self.cfg.input
        records = read_manifest(fs, path)
        if records and icfg.video_column not in records[0]:
            raise ConfigError(
                f"manifest {icfg.uri!r} has no {icfg.video_column!r} column (columns: "
                f"{sorted(records[0])}); set input.video_column"
            )
        if (
            self.cfg.caption.source == "manifest"
            and records
            and icfg.caption_column not in (records[0])
        ):
            raise ConfigError(
                f"caption.source=manifest but manifest {icfg.uri!r} has no "
                f"{icfg.caption_column!r} column; set input.caption_column or caption.source"
            )
        base = posixpath.dirname(path)
        rows: Batch = []
        seen: set[str] = set()
        for i, rec in enumerate(records):
            video = rec.get(icfg.video_column)
            uri = _resolve(fs, base, str(video)) if video not in (None, "") else None
            vid = rec.get(icfg.id_column)
            vid = str(vid) if vid not in (None, "") else stable_hash(uri or f"{icfg.uri}#{i}")
            if vid in seen:  # keep the input, under an id of its own, as an error
                rows.append(
                    self._bad(
                        f"{vid}@row{i}",
                        uri or f"{icfg.uri}#{i}",
                        f"duplicate id {vid!r} in manifest row {i}",
                    )
                )
                continue
            seen.add(vid)
            if uri is None:
                rows.append(self._bad(vid, f"{icfg.uri}#{i}", f"manifest row {i} has no video"))
                continue
            caption = rec.get(icfg.caption_column)
            rows.append(self._row(uri, vid, None if caption is None else str(caption)))
        return rows

    def _row(self, uri: str, video_id: str | None, caption: str | None) -> Row:
        return {
            "video_id": video_id or stable_hash(uri),
            "source_uri": uri,
            "manifest_caption": caption,
            "input_rows": 1,
            "row_weight": 1,
            **dict.fromkeys(ERROR_COLUMNS),
        }

    def _bad(self, video_id: str, uri: str, message: str) -> Row:
        err = SampleError(ErrorKind.BAD_MANIFEST_ROW, message, stage=self.name)
        return self.fail(self._row(uri, video_id, None), err)


def read_manifest(fs: Any, path: str) -> list[dict]:
    """Records of a CSV / JSONL / JSON-list / Parquet manifest, in file order."""
    with fs.open(path, "rb") as f:
        data = f.read()
    low = path.lower()
    if low.endswith(".parquet"):
        import pyarrow.parquet as pq

        return pq.read_table(io.BytesIO(data)).to_pylist()
    if low.endswith(".csv"):
        import pyarrow.csv as pacsv

        opts = pacsv.ConvertOptions(strings_can_be_null=False)
        table = pacsv.read_csv(io.BytesIO(data), convert_options=opts)
        return table.cast(_all_strings(table.schema)).to_pylist()
    text = data.decode()
    if low.endswith(".json") and text.lstrip().startswith("["):
        return list(json.loads(text))
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError as e:
            raise ConfigError(f"manifest {path!r} line {n} is not JSON: {e}") from None
    return out


def _all_strings(schema):
    import pyarrow as pa

    return pa.schema([pa.field(f.name, pa.string()) for f in schema])


def _is_file(fs: Any, path: str) -> bool:
    return fs.exists(path) and not fs.isdir(path)


def _hidden(path: str) -> bool:
    return posixpath.basename(path).startswith(".")


def _is_local(fs: Any) -> bool:
    protocol = fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,)
    return "file" in protocol or "local" in protocol


def _full_uri(fs: Any, path: str) -> str:
    """Local files stay plain paths (decord and native PyAV I/O want them); others get a
    protocol so a worker on another machine opens the same object."""
    return path if _is_local(fs) else fs.unstrip_protocol(path)


def _resolve(fs: Any, base: str, video: str) -> str:
    """A manifest entry -> a URI: absolute URIs as they are, relative ones against ``base``."""
    if "://" in video or video.startswith("/"):
        if video.startswith("/") and not _is_local(fs):
            return fs.unstrip_protocol(video)
        return video
    return _full_uri(fs, posixpath.join(base, video))
