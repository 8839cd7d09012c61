"""Parquet shards on any fsspec URI: explicit schema, provenance metadata, atomic writes.

A shard is written under a temporary name and renamed into place, so a reader (or a resumed
build) never sees a half-written file. Readers validate the schema against the declared spec.

Two layouts of a dataset root are read (``list_shards``): the one a build writes
(``ROOT/<kind>/*.parquet``) and the one ``sama publish`` uploads (``ROOT/data/<kind>/*.parquet``,
or ``ROOT/data/<kind>/NNNN/*.parquet`` for a kind split into numbered sub-folders), so a folder
downloaded from the Hub, or ``hf://datasets/ORG/NAME`` itself, is a dataset root too.
"""

from __future__ import annotations

import posixpath
import uuid
from collections.abc import Iterator

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq

from datasets_spec import RecordSpec
from datasets_spec.checks import declared_spec
from datasets_spec.provenance import read_provenance, with_provenance


def url_to_fs(uri: str, fs: fsspec.AbstractFileSystem | None = None):
    """``(fs, path)`` for ``uri``; an explicit ``fs`` is used as is."""
    if fs is not None:
        return fs, uri
    return fsspec.core.url_to_fs(uri)


def write_shard(
    uri: str,
    table: pa.Table,
    spec: RecordSpec,
    provenance: dict | None = None,
    *,
    row_group_rows: int = 32,
    fs: fsspec.AbstractFileSystem | None = None,
    compression: str = "zstd",
) -> str:
    """Validate ``table`` against ``spec`` and write it atomically to ``uri``."""
    spec.validate(table)
    schema = spec.schema if provenance is None else with_provenance(spec.schema, provenance)
    table = table.cast(schema) if not table.schema.equals(schema, check_metadata=True) else table
    fs, path = url_to_fs(uri, fs)
    parent = posixpath.dirname(path)
    if parent:
        fs.makedirs(parent, exist_ok=True)
    tmp = posixpath.join(parent, f".tmp-{uuid.uuid4().hex}-{posixpath.basename(path)}")
    with fs.open(tmp, "wb") as f:
        pq.write_table(
            table,
            f,
            row_group_size=max(1, row_group_rows),
            compression=compression,
            use_dictionary=[c.name for c in spec.columns if pa.types.is_string(c.type)],
        )
    fs.mv(tmp, path)
    return path


def read_schema(uri: str, fs=None) -> pa.Schema:
    fs, path = url_to_fs(uri, fs)
    with fs.open(path, "rb") as f:
        return pq.read_schema(f)


def spec_of(schema: pa.Schema) -> RecordSpec:
    """The spec a shard declares (``SchemaError`` if none, unknown, or not text)."""
    return declared_spec(schema)


def shard_provenance(uri: str, fs=None) -> dict | None:
    return read_provenance(read_schema(uri, fs))


def read_shard(uri: str, spec: RecordSpec | None = None, fs=None, columns=None) -> pa.Table:
    """Read and validate a whole shard (small shards, tests, tools)."""
    fs, path = url_to_fs(uri, fs)
    with fs.open(path, "rb") as f:
        table = pq.read_table(f, columns=columns)
    spec = spec or spec_of(table.schema)
    if columns is None:
        spec.validate(table)
    return table


def iter_row_groups(uri: str, fs=None, columns=None) -> Iterator[pa.Table]:
    """Stream a shard one row group at a time (bounded memory)."""
    fs, path = url_to_fs(uri, fs)
    with fs.open(path, "rb") as f:
        pf = pq.ParquetFile(f)
        for i in range(pf.num_row_groups):
            yield pf.read_row_group(i, columns=columns)


# where each layout keeps a kind's shards, relative to the root (the first that has any wins)
LAYOUTS: tuple[tuple[str, ...], ...] = (
    ("{kind}/*.parquet",),  # a build's output
    ("data/{kind}/*.parquet", "data/{kind}/*/*.parquet"),  # a published repo
)


def is_local(fs: fsspec.AbstractFileSystem) -> bool:
    return "file" in (fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,))


def list_shards(root: str, kind: str, fs=None, *, include_temp: bool = False) -> list[str]:
    """Sorted shard paths of ``kind`` (``clips``, ``pairs``, ``errors``) under ``root``, in the
    build layout or, if it has none, the published one (``LAYOUTS``).

    In-flight temp files of ``write_shard`` (``.tmp-*``) are left out unless ``include_temp``.
    """
    fs, path = url_to_fs(root, fs)
    found: list[str] = []
    for patterns in LAYOUTS:
        for pattern in patterns:
            found += fs.glob(posixpath.join(path, pattern.format(kind=kind)))
        found = sorted(
            p for p in set(found) if include_temp or not posixpath.basename(p).startswith(".")
        )
        if found:
            break
    return found if is_local(fs) else [fs.unstrip_protocol(p) for p in found]
