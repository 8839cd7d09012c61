"""Shard writer: byte-sized Parquet shards, row groups of one bucket, atomic writes, provenance.

Rows arrive from the pipeline in any order. Clip rows are buffered per aspect bucket and cut into
row groups of ``output.row_group_rows`` rows of one bucket (a reader batches a row group without
mixing shapes); when the full row groups hold ``output.shard_size_mb`` of data, they become one
shard. Partial row groups wait for more rows, for the ``flush_interval_s`` timer (which bounds
the work a killed build loses) or for the end. Error rows go to ``errors/`` shards, written
whenever clips are, so an input's rows become durable together.

Every shard is validated against its spec, carries the provenance in its Parquet metadata
(``datasets_spec.provenance``), and is written under a temporary name then renamed, so a reader
or a resumed build never sees half a file. ``write_*`` return the ``video_id`` of every row
they made durable; the caller turns those into resume markers (``pipelines/engine/resume.py``).
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from typing import Any, ClassVar

import pyarrow as pa
import pyarrow.parquet as pq

from datasets_spec import CLIPS_V1, ERRORS_V1, RecordSpec
from datasets_spec.provenance import with_provenance

Row = dict[str, Any]
ERROR_FLUSH_ROWS = 1000  # errors are small: write them at least every this many rows
_ROW_OVERHEAD = 512  # bytes per row besides its binary columns (ids, numbers, lists)


def is_local(fs: Any) -> bool:
    protocol = fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,)
    return "file" in protocol or "local" in protocol


@contextlib.contextmanager
def open_atomic(fs: Any, path: str) -> Iterator[Any]:
    """A file that appears at ``path`` only once fully written (temp name, then rename).

    Local files are fsynced before the rename, so a marker written after it never points at
    data a crash could lose. A failure leaves no file at ``path`` (and removes the temp file).
    """
    parent = posixpath.dirname(path)
    tmp = posixpath.join(parent, f".tmp-{uuid.uuid4().hex}-{posixpath.basename(path)}")
    fs.makedirs(parent, exist_ok=True)
    try:
        if is_local(fs):
            with open(tmp, "wb") as f:
                yield f
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        else:
            with fs.open(tmp, "wb") as f:
                yield f
            fs.mv(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            fs.rm(tmp)
        raise


def write_table_atomic(
    fs: Any, path: str, spec: RecordSpec, provenance: dict, groups: list[pa.Table]
) -> None:
    """Write ``groups`` (each one row group) as one validated shard with provenance."""
    schema = with_provenance(spec.schema, provenance)
    for g in groups:
        spec.validate(g)
    with open_atomic(fs, path) as f:
        names = [c.name for c in spec.columns if pa.types.is_string(c.type)]
        with pq.ParquetWriter(f, schema, compression="zstd", use_dictionary=names) as w:
            for g in groups:
                w.write_table(g.cast(schema), row_group_size=max(1, g.num_rows))


def clip_record(row: Row) -> Row:
    """A ``clips/v1`` row from a pipeline row (in-flight columns dropped)."""
    return {name: row.get(name) for name in CLIPS_V1.column_names}


def error_record(row: Row) -> Row:
    """An ``errors/v1`` row from a pipeline error row."""
    item = row["video_id"]
    return {
        "error_id": f"{row.get('clip_id') or item}:{row['error_stage']}",
        "input_uri": row["source_uri"],
        "item_id": item,
        "record_kind": "clips",
        "stage": row["error_stage"],
        "kind": row["error_kind"],
        "message": row["error_message"],
        "time": row["error_time"],
    }


def row_bytes(row: Row) -> int:
    return _ROW_OVERHEAD + sum(len(v) for v in row.values() if isinstance(v, bytes | bytearray))


class ShardWriter:
    """Buffers clip and error rows and writes them as shards under ``root`` (see module doc).

    A subclass writes another record kind by changing ``spec``, ``owner_column`` and the three
    hooks ``record`` / ``error`` / ``group_key`` (``pipelines/pairs/writer.py``: ``pairs/v1``).
    """

    spec: ClassVar[RecordSpec] = CLIPS_V1  # the rows' record kind
    owner_column: ClassVar[str] = "video_id"  # the column naming the input a row came from

    def __init__(
        self,
        fs: Any,
        root: str,
        provenance: dict,
        *,
        shard_bytes: int,
        row_group_rows: int,
        flush_interval_s: float = 0.0,
        run_id: str | None = None,
    ) -> None:
        self.fs, self.root = fs, root
        kind = self.spec.kind
        self.prov_rows = {**provenance, "spec": self.spec.id}
        self.prov_errors = {**provenance, "spec": ERRORS_V1.id}
        self.shard_bytes, self.rg_rows = shard_bytes, row_group_rows
        self.flush_interval_s = flush_interval_s
        self.run_id = run_id or time.strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6]
        self.buckets: dict[tuple, list[Row]] = defaultdict(list)
        self.errors: list[Row] = []
        self.full_bytes = 0  # bytes in complete row groups waiting to be written
        self.seq = {kind: 0, "errors": 0}
        self.last_flush = time.monotonic()
        self.shards: list[str] = []
        self.rows_written = {kind: 0, "errors": 0}

    # ---- the record kind ---------------------------------------------------------------
    def record(self, row: Row) -> Row:
        """The stored row of a pipeline row."""
        return clip_record(row)

    def error(self, row: Row) -> Row:
        """The ``errors/v1`` row of a pipeline error row."""
        return error_record(row)

    def group_key(self, rec: Row) -> tuple:
        """Rows with the same key share row groups (one tensor shape per row group)."""
        return (rec["bucket_width"], rec["bucket_height"])

    # ---- buffering ---------------------------------------------------------------------
    def add_row(self, row: Row) -> list[str]:
        """Buffer a row; returns the input ids made durable if this filled a shard."""
        rec = self.record(row)
        buf = self.buckets[self.group_key(rec)]
        buf.append(rec)
        if len(buf) % self.rg_rows == 0:
            self.full_bytes += sum(row_bytes(r) for r in buf[-self.rg_rows :])
        return self.flush() if self.full_bytes >= self.shard_bytes else []

    add_clip = add_row

    def add_error(self, row: Row) -> list[str]:
        self.errors.append(self.error(row))
        return self.flush() if len(self.errors) >= ERROR_FLUSH_ROWS else []

    def pending(self) -> int:
        return len(self.errors) + sum(len(b) for b in self.buckets.values())

    def tick(self) -> list[str]:
        """Flush everything buffered if ``flush_interval_s`` has passed since the last write."""
        due = self.flush_interval_s and time.monotonic() - self.last_flush >= self.flush_interval_s
        return self.flush(force=True) if due and self.pending() else []

    # ---- writing -----------------------------------------------------------------------
    def flush(self, force: bool = False) -> list[str]:
        """Write the full row groups (all rows with ``force``) and the errors.

        Returns the input id (``owner_column`` / ``item_id``) of every row written (once per row).
        """
        groups: list[pa.Table] = []
        for key in sorted(self.buckets):
            buf = self.buckets[key]
            n = len(buf) if force else len(buf) // self.rg_rows * self.rg_rows
            for i in range(0, n, self.rg_rows):
                groups.append(self.spec.from_rows(buf[i : i + self.rg_rows]))
            self.buckets[key] = buf[n:]
        self.buckets = defaultdict(list, {k: v for k, v in self.buckets.items() if v})
        self.full_bytes = 0
        durable = self._write(self.spec.kind, self.spec, self.prov_rows, groups)
        if self.errors:
            errors, self.errors = self.errors, []
            table = ERRORS_V1.from_rows(errors)
            durable += self._write("errors", ERRORS_V1, self.prov_errors, [table])
        self.last_flush = time.monotonic()
        return durable

    def close(self) -> list[str]:
        return self.flush(force=True)

    def _write(self, kind: str, spec: RecordSpec, prov: dict, groups: list[pa.Table]) -> list[str]:
        groups = [g for g in groups if g.num_rows]
        if not groups:
            return []
        name = f"part-{self.run_id}-{self.seq[kind]:05d}.parquet"
        path = posixpath.join(self.root, kind, name)
        write_table_atomic(self.fs, path, spec, prov, groups)
        self.seq[kind] += 1
        self.shards.append(path)
        id_col = self.owner_column if kind == self.spec.kind else "item_id"
        ids = [v for g in groups for v in g.column(id_col).to_pylist()]
        self.rows_written[kind] += len(ids)
        return ids
