"""Manifest files -> row dicts (or ``BadRecord`` for a row that is not even a row), streamed.

Both recipes read manifests (clip inputs, edit pairs) and a manifest may hold millions of rows,
so ``iter_records(uri, fmt, storage_options, chunk_rows)`` yields them in chunks and never
holds the file: JSONL line by line, CSV through the ``csv`` module row by row (header row,
every value a string, quoted newlines allowed), Parquet record batch by record batch. Two
formats are one value and are read whole: JSON (a list of objects, ``{"key": [...]}`` with one
list, or an id -> object mapping) and WebDataset tar shards (X2Edit; one sample = the members
that share a key: each member becomes a ``tar://member::shard`` URI the workers open through
fsspec, and a ``.json`` member is parsed into the row).

A line of broken JSON or a CSV row with more or fewer fields than its header is a ``BadRecord``
at its place, so the errors table accounts for it and the rest of the manifest is still read.
"""

from __future__ import annotations

import csv
import io
import json
import re
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from sama.errors import ConfigError


@dataclass(frozen=True)
class BadRecord:
    """A manifest row that cannot be read as a row (broken JSON, wrong field count...)."""

    row_index: int
    raw: Any
    message: str


Record = dict[str, Any] | BadRecord
CHUNK_ROWS = 8192

# webdataset's own key/extension split: key = path up to the first dot of the file name
_WDS_KEY = re.compile(r"^((?:.*/|)[^.]+)[.]([^/]*)$")


def _open(uri: str, storage_options: dict[str, Any]):
    import fsspec

    try:
        return fsspec.open(uri, "rb", **storage_options).open()
    except FileNotFoundError:
        raise ConfigError(f"manifest {uri!r} does not exist") from None


def _lines(f) -> Iterator[str]:
    text = io.TextIOWrapper(f, encoding="utf-8-sig", newline="")
    yield from text


def iter_jsonl(f) -> Iterator[Record]:
    """One object per line; blank lines are skipped (they are no row)."""
    n_rows = 0
    for n, line in enumerate(_lines(f), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            yield BadRecord(n_rows, line.rstrip("\n"), f"line {n} is not JSON ({e.msg})")
        else:
            if isinstance(obj, dict):
                yield obj
            else:
                yield BadRecord(n_rows, line.rstrip("\n"),
                                f"line {n} is a JSON {type(obj).__name__}, not an object")  # fmt: skip
        n_rows += 1


def iter_csv(f) -> Iterator[Record]:
    """Rows as dicts; a row with more or fewer fields than the header is a ``BadRecord`` (an
    empty field is data: ``""``; a missing one means the row is broken, e.g. cut short)."""
    reader = csv.DictReader(_lines(f), restkey="__extra__", restval=None)
    for i, row in enumerate(reader):
        width = len(reader.fieldnames or [])
        if "__extra__" in row:
            have = width + len(row["__extra__"])
        elif any(v is None for v in row.values()):
            have = sum(v is not None for v in row.values())
        else:
            yield row
            continue
        yield BadRecord(i, row, f"CSV row has {have} fields, the header has {width}")


def iter_parquet(f, chunk_rows: int) -> Iterator[Record]:
    import pyarrow.parquet as pq

    for batch in pq.ParquetFile(f).iter_batches(batch_size=chunk_rows):
        yield from batch.to_pylist()


def read_json(data: bytes, uri: str) -> list[Record]:
    """A JSON list of objects; ``{"data": [...]}`` (one list value); ``{id: object}``; or,
    when the file does not parse as one JSON value, JSON lines."""
    try:
        obj = json.loads(data.decode("utf-8-sig"))
    except json.JSONDecodeError:
        return list(iter_jsonl(io.BytesIO(data)))
    if isinstance(obj, dict):
        lists = [v for v in obj.values() if isinstance(v, list)]
        if len(lists) == 1 and len(obj) <= 3:
            obj = lists[0]
        elif obj and all(isinstance(v, dict) for v in obj.values()):
            obj = [{"id": k, **v} if "id" not in v else v for k, v in obj.items()]
        else:
            obj = [obj]
    if not isinstance(obj, list):
        raise ConfigError(f"manifest {uri!r} holds a JSON {type(obj).__name__}, not rows")
    return [
        r if isinstance(r, dict)
        else BadRecord(i, r, f"item {i} is a JSON {type(r).__name__}, not an object")
        for i, r in enumerate(obj)
    ]  # fmt: skip


def read_webdataset(uri: str, storage_options: dict[str, Any]) -> list[Record]:
    """Samples of one WebDataset shard, in tar order: ``{"__key__": "shard/key",
    "__url__": shard, "<ext>": "tar://<member>::<shard>", "json": {...}}``."""
    shard = uri.rsplit("/", 1)[-1].rsplit(".", 1)[0]
    samples: dict[str, dict[str, Any]] = {}
    with _open(uri, storage_options) as f, tarfile.open(fileobj=f, mode="r|*") as tar:
        for member in tar:
            match = _WDS_KEY.match(member.name) if member.isfile() else None
            if not match:
                continue
            key, ext = match.groups()
            sample = samples.setdefault(key, {"__key__": f"{shard}/{key}", "__url__": uri})
            if ext.lower() == "json":
                blob = tar.extractfile(member).read()
                try:
                    sample["json"] = json.loads(blob)
                except json.JSONDecodeError as e:
                    sample["__bad__"] = f"sample {key!r}: its .json member is not JSON ({e.msg})"
            else:
                sample[ext] = f"tar://{member.name}::{uri}"
    return [
        BadRecord(i, s, s["__bad__"]) if "__bad__" in s else s
        for i, s in enumerate(samples.values())
    ]


def iter_records(
    uri: str, fmt: str, storage_options: dict[str, Any], chunk_rows: int = CHUNK_ROWS
) -> Iterator[list[Record]]:
    """Rows of one manifest file of format ``fmt``, in chunks of at most ``chunk_rows``, in file
    order; ``ConfigError`` if it cannot be read."""
    import pyarrow as pa

    if fmt == "webdataset":
        try:
            yield from _chunks(iter(read_webdataset(uri, storage_options)), chunk_rows)
        except (tarfile.TarError, FileNotFoundError) as e:
            raise ConfigError(f"manifest {uri!r} is not a readable tar shard: {e}") from None
        return
    if fmt not in ("csv", "jsonl", "json", "parquet"):
        raise ConfigError(
            f"unknown manifest format {fmt!r}; use csv, jsonl, json, parquet or webdataset"
        )
    try:
        with _open(uri, storage_options) as f:
            if fmt == "json":
                rows: Iterator[Record] = iter(read_json(f.read(), uri))
            elif fmt == "csv":
                rows = iter_csv(f)
            elif fmt == "jsonl":
                rows = iter_jsonl(f)
            else:
                rows = iter_parquet(f, chunk_rows)
            yield from _chunks(rows, chunk_rows)
    except (UnicodeDecodeError, csv.Error, OSError, pa.ArrowException) as e:
        raise ConfigError(f"manifest {uri!r} cannot be read as {fmt}: {e}") from None


def _chunks(rows: Iterator[Record], n: int) -> Iterator[list[Record]]:
    buf: list[Record] = []
    for r in rows:
        buf.append(r)
        if len(buf) >= n:
            yield buf
            buf = []
    if buf:
        yield buf
