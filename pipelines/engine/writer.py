"""Shard writing where the data is: one write task turns a bundle of rows into shards + a sidecar.

Ray Data hands the last map of a build (``WriteShards``, ``engine/runner.py``) bundles of about
``rows_per_shard`` rows (estimated from the models' tensor sizes so a shard holds about
``output.shard_size_mb``); the task that receives a bundle writes it, in the worker:

- the good rows as ``<kind>/part-<kind>-<digest>[-k].parquet``: one validated ``RecordSpec``
  table with the provenance in its footer, row groups of one group key (a bucket: one tensor
  shape per row group) capped by ``output.row_group_rows`` and ``output.row_group_mb``;
- the error rows as ``errors/part-<kind>-<digest>.parquet`` (``errors/v1``);
- then the sidecar ``_state/<kind>/sidecars/<digest>.json``: which inputs the shards hold and
  how many rows of each (data rows, error rows and the count an input's announcing row gives),
  so "input complete" is computed from sidecars (``engine/resume.py``), never from a view of the
  rows in the driver. The task returns the same few kilobytes to the driver (progress, counts).

``digest`` hashes the sorted row ids of the bundle, so a retried task writes the same names;
a shard becomes visible only when whole (``open_atomic``: temp + fsync + rename locally, a
direct PUT under the final name on object stores, where a PUT is atomic and a rename would be a
copy + delete of every shard). A shard without a sidecar is a write that was killed: resume
deletes it (its rows are made again). Rows whose ids an earlier, interrupted run already wrote
(``skip``) are dropped here, so a resumed build has no duplicates.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import posixpath
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from datasets_spec import ERRORS_V1, RecordSpec
from datasets_spec.provenance import with_provenance
from pipelines.engine.root import SIDECAR_DIR, state_dir

OBJECT_STORES = ("s3", "s3a", "gs", "gcs", "az", "abfs", "abfss", "r2", "oss")
SIDECAR_VERSION = 1
_ROW_OVERHEAD = 512  # bytes per row besides its binary columns (ids, numbers, lists)


@dataclass(frozen=True)
class RecordKind:
    """What the writer needs to know of a recipe's records (the engine knows no kind)."""

    name: str  # "clips" / "pairs": the shard folder and the owner of the error shards
    spec: RecordSpec
    input_column: str  # the input a row came from ("video_id" / "pair_id")
    error_key: tuple[str, ...]  # error_id = "<first non-null of these>:<stage>"
    uri_columns: tuple[str, ...]  # errors/v1 input_uri: the first non-null of these
    group_by: tuple[str, ...]  # rows with equal values share row groups (one tensor shape)
    seconds_column: str | None = None  # source duration, summed once per input
    count_by: tuple[str, ...] = ()  # columns whose values are counted per shard (e.g. media)


@dataclass(frozen=True)
class WriteSettings:
    root: str
    storage_options: dict
    provenance: dict
    shard_bytes: int
    row_group_rows: int
    row_group_bytes: int
    run_id: str


def protocols(fs: Any) -> tuple[str, ...]:
    p = fs.protocol
    return p if isinstance(p, tuple) else (p,)


def is_local(fs: Any) -> bool:
    return bool({"file", "local"} & set(protocols(fs)))


def is_object_store(fs: Any) -> bool:
    return bool(set(OBJECT_STORES) & set(protocols(fs))) or "memory" in protocols(fs)


def _fsync_dir(path: str) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def open_atomic(fs: Any, path: str) -> Iterator[Any]:
    """A file that appears at ``path`` only once fully written (see the module docstring).

    A failure leaves nothing at ``path`` (and no temp file)."""
    parent = posixpath.dirname(path)
    fs.makedirs(parent, exist_ok=True)
    if is_object_store(fs):
        f = fs.open(path, "wb")
        try:
            yield f
        except BaseException:
            _abandon(fs, f, path)
            raise
        f.close()  # the object appears when the upload completes
        return
    tmp = posixpath.join(parent, f".tmp-{uuid.uuid4().hex}-{posixpath.basename(path)}")
    try:
        if is_local(fs):
            with open(tmp, "wb") as f:
                yield f
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
            _fsync_dir(parent)
        else:
            with fs.open(tmp, "wb") as f:
                yield f
            fs.mv(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError, OSError):
            fs.rm(tmp)
        raise


def _abandon(fs: Any, f: Any, path: str) -> None:
    """Drop an upload that failed midway, so nothing appears at ``path``: closing the file (as
    ``with`` would) completes the upload of what was written so far."""
    with contextlib.suppress(Exception):
        f.discard()  # s3fs: aborts the multipart upload
    with contextlib.suppress(Exception):
        f.closed = True  # neither a later close() nor the garbage collector uploads it now
    if "memory" in protocols(fs):  # memory:// shows a file from its open on
        with contextlib.suppress(FileNotFoundError):
            fs.rm(path)


def write_parquet(fs: Any, path: str, spec: RecordSpec, prov: dict, groups: list[pa.Table]) -> int:
    """Write ``groups`` (each one row group) as one validated shard; returns its size in bytes."""
    schema = with_provenance(spec.schema, prov)
    strings = [c.name for c in spec.columns if pa.types.is_string(c.type)]
    with open_atomic(fs, path) as f:
        with pq.ParquetWriter(f, schema, compression="zstd", use_dictionary=strings) as w:
            for g in groups:
                spec.validate(g)
                w.write_table(g.cast(schema), row_group_size=max(1, g.num_rows))
        size = f.tell()
    return int(size)


def row_bytes(table: pa.Table) -> list[int]:
    """Uncompressed bytes of each row: its binary columns plus a fixed overhead."""
    total = [_ROW_OVERHEAD] * table.num_rows
    for col in table.columns:
        if pa.types.is_large_binary(col.type) or pa.types.is_binary(col.type):
            lengths = pc.fill_null(pc.binary_length(col), 0).to_pylist()
            total = [a + b for a, b in zip(total, lengths, strict=True)]
    return total


def row_groups(table: pa.Table, kind: RecordKind, max_rows: int, max_bytes: int) -> list[pa.Table]:
    """``table`` sorted by the group key and cut into row groups of one key, capped by rows
    and by uncompressed bytes (a single row over ``max_bytes`` is a group of its own)."""
    if table.num_rows == 0:
        return []
    keys = [(k, "ascending") for k in (*kind.group_by, kind.spec.key)]
    table = table.take(pc.sort_indices(table, sort_keys=keys))
    sizes = row_bytes(table)
    key_values = list(zip(*(table.column(k).to_pylist() for k in kind.group_by), strict=True))
    groups, start, acc = [], 0, 0
    for i in range(table.num_rows):
        new_key = i > start and key_values[i] != key_values[start]
        if i > start and (new_key or i - start >= max_rows or acc + sizes[i] > max_bytes):
            groups.append(table.slice(start, i - start))
            start, acc = i, 0
        acc += sizes[i]
    groups.append(table.slice(start))
    return groups


def _shards(groups: list[pa.Table], shard_bytes: int) -> list[list[pa.Table]]:
    """Row groups packed into shards of about ``shard_bytes`` (a bundle a little over the
    estimate stays one shard; one far over it is split)."""
    shards: list[list[pa.Table]] = [[]]
    acc = 0
    for g in groups:
        size = sum(row_bytes(g))
        if shards[-1] and acc + size > shard_bytes * 1.5:
            shards.append([])
            acc = 0
        shards[-1].append(g)
        acc += size
    return [s for s in shards if s]


def coalesce(table: pa.Table, names: tuple[str, ...]) -> pa.ChunkedArray:
    cols = [table.column(n) for n in names if n in table.column_names]
    return cols[0] if len(cols) == 1 else pc.coalesce(*cols)


def error_table(rows: pa.Table, kind: RecordKind) -> pa.Table:
    """``errors/v1`` rows of a bundle's error rows."""
    stage = rows.column("error_stage")
    ids = pc.binary_join_element_wise(coalesce(rows, kind.error_key), stage, ":")
    uri = pc.fill_null(coalesce(rows, kind.uri_columns), "")
    n = rows.num_rows
    return pa.table(
        {
            "error_id": ids,
            "input_uri": uri,
            "item_id": rows.column(kind.input_column),
            "record_kind": pa.array([kind.name] * n, pa.string()),
            "stage": stage,
            "kind": rows.column("error_kind"),
            "message": rows.column("error_message"),
            "time": rows.column("error_time"),
        },
        schema=ERRORS_V1.schema,
    )


def data_table(rows: pa.Table, spec: RecordSpec) -> pa.Table:
    """The spec's columns of the good rows (nullable columns no stage made are null)."""
    n = rows.num_rows
    arrays = [
        rows.column(c.name).cast(c.type) if c.name in rows.column_names else pa.nulls(n, c.type)
        for c in spec.columns
    ]
    return pa.Table.from_arrays(arrays, schema=spec.schema)


def row_ids(rows: pa.Table, kind: RecordKind) -> pa.ChunkedArray:
    """The stored id of each row: the spec key of a good row, the error id of an error row."""
    failed = pc.is_valid(rows.column("error_kind"))
    err = pc.binary_join_element_wise(coalesce(rows, kind.error_key), rows.column("error_stage"),
                                      ":")  # fmt: skip
    return pc.if_else(failed, err, rows.column(kind.spec.key))


def input_counts(rows: pa.Table, kind: RecordKind) -> dict[str, list]:
    """Per input of a bundle: data rows, error rows (weights), announced total, seconds."""
    failed = pc.is_valid(rows.column("error_kind")).to_pylist()
    ids = rows.column(kind.input_column).to_pylist()
    weights = pc.fill_null(rows.column("row_weight"), 1).to_pylist()
    announced = pc.fill_null(rows.column("input_rows"), 0).to_pylist()
    seconds = (
        pc.fill_null(rows.column(kind.seconds_column), 0.0).to_pylist()
        if kind.seconds_column and kind.seconds_column in rows.column_names
        else [0.0] * rows.num_rows
    )
    acc: dict[str, list] = {}
    for i, vid in enumerate(ids):
        a = acc.setdefault(vid, [0, 0, 0, 0.0])
        a[1 if failed[i] else 0] += int(weights[i])
        if announced[i]:
            a[2] = int(announced[i])
            a[3] = float(seconds[i])
    names = sorted(acc)
    return {
        "ids": names,
        "data_rows": [acc[v][0] for v in names],
        "error_rows": [acc[v][1] for v in names],
        "announced": [acc[v][2] for v in names],
        "seconds": [acc[v][3] for v in names],
    }


def write_bundle(rows: pa.Table, kind: RecordKind, ws: WriteSettings, skip: Any = None) -> dict:
    """Write one bundle (see the module docstring); returns its sidecar (a small dict)."""
    from sama.shards import url_to_fs

    fs, root = url_to_fs(ws.root, None) if not ws.storage_options else _fs(ws)
    ids = row_ids(rows, kind)
    if skip is not None and len(skip):
        keep = pc.invert(pc.is_in(ids, value_set=skip))
        skipped = rows.num_rows - pc.sum(keep.cast(pa.int64())).as_py()
        rows, ids = rows.filter(keep), ids.filter(keep)
    else:
        skipped = 0
    digest = hashlib.sha1("\n".join(sorted(ids.to_pylist())).encode()).hexdigest()[:20]
    failed = pc.is_valid(rows.column("error_kind"))
    good, bad = rows.filter(pc.invert(failed)), rows.filter(failed)
    groups = row_groups(data_table(good, kind.spec), kind, ws.row_group_rows, ws.row_group_bytes)
    prov = {**ws.provenance, "spec": kind.spec.id}
    data_paths, nbytes = [], 0
    packed = _shards(groups, ws.shard_bytes)
    for k, shard in enumerate(packed):
        name = f"part-{kind.name}-{digest}{'' if len(packed) == 1 else f'-{k}'}.parquet"
        nbytes += write_parquet(fs, posixpath.join(root, kind.name, name), kind.spec, prov, shard)
        data_paths.append(f"{kind.name}/{name}")
    errors_path = None
    if bad.num_rows:
        errors_path = f"errors/part-{kind.name}-{digest}.parquet"
        nbytes += write_parquet(fs, posixpath.join(root, errors_path), ERRORS_V1,
                                {**ws.provenance, "spec": ERRORS_V1.id}, [error_table(bad, kind)])  # fmt: skip
    sidecar = {
        "v": SIDECAR_VERSION,
        "name": digest,
        "run": ws.run_id,
        "data": data_paths,
        "errors": errors_path,
        "rows": good.num_rows,
        "error_rows": bad.num_rows,
        "skipped_rows": int(skipped),
        "bytes": nbytes,
        "errors_by_kind": _counts(bad, "error_kind"),
        "errors_by_stage": _counts(bad, "error_stage"),
        "counts_by": {c: _counts(good, c) for c in kind.count_by},
        "inputs": input_counts(rows, kind),
    }
    if good.num_rows or bad.num_rows:
        path = posixpath.join(root, state_dir(kind.name), SIDECAR_DIR, f"{digest}.json")
        with open_atomic(fs, path) as f:
            f.write(json.dumps(sidecar, separators=(",", ":")).encode())
    return sidecar


def _counts(table: pa.Table, column: str) -> dict[str, int]:
    if table.num_rows == 0:
        return {}
    vc = pc.value_counts(table.column(column)).to_pylist()
    return {d["values"]: int(d["counts"]) for d in vc}


def _fs(ws: WriteSettings) -> tuple[Any, str]:
    import fsspec

    return fsspec.core.url_to_fs(ws.root, **ws.storage_options)
