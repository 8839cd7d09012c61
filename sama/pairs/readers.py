"""Manifest file formats -> lists of row dicts (or ``BadRow`` for a row that is not even a row).

One reader per format, all through fsspec: CSV (header row, every value a string), JSONL (one
object per line), JSON (a list of objects, ``{"key": [...]}`` with one list, or an id ->
object mapping), Parquet, and WebDataset tar shards (X2Edit), where one sample = the members
that share a key: each member becomes a ``tar://member::shard`` URI the workers open through
fsspec, and a ``.json`` member is parsed into the row.

A line of broken JSON or a CSV row with too many fields is returned as a ``BadRow`` at its
place, so the errors table accounts for it and the rest of the manifest is still read.
"""

from __future__ import annotations

import csv
import io
import json
import re
import tarfile
from typing import Any

from sama.errors import ConfigError
from sama.pairs.manifest import BadRow

Record = dict[str, Any] | BadRow

# webdataset's own key/extension split: key = path up to the first dot of the file name
_WDS_KEY = re.compile(r"^((?:.*/|)[^.]+)[.]([^/]*)$")


def _read_bytes(uri: str, storage_options: dict[str, Any]) -> bytes:
    import fsspec

    try:
        with fsspec.open(uri, "rb", **storage_options) as f:
            return f.read()
    except FileNotFoundError:
        raise ConfigError(f"manifest {uri!r} does not exist") from None


def read_csv(data: bytes) -> list[Record]:
    text = data.decode("utf-8-sig")
    reader = csv.DictReader(io.StringIO(text, newline=""), restkey="__extra__")
    out: list[Record] = []
    for i, row in enumerate(reader):
        if "__extra__" in row:
            n = len(reader.fieldnames or []) + len(row["__extra__"])
            out.append(
                BadRow(
                    i, row, f"CSV row has {n} fields, the header has {len(reader.fieldnames or [])}"
                )
            )
            continue
        out.append(row)
    return out


def read_jsonl(data: bytes) -> list[Record]:
    out: list[Record] = []
    for n, line in enumerate(data.decode("utf-8-sig").splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            out.append(BadRow(len(out), line, f"line {n} is not JSON ({e.msg})"))
            continue
        if not isinstance(obj, dict):
            out.append(
                BadRow(len(out), line, f"line {n} is a JSON {type(obj).__name__}, not an object")
            )
            continue
        out.append(obj)
    return out


def read_json(data: bytes, uri: str) -> list[Record]:
    """A JSON list of objects; ``{"data": [...]}`` (one list value); ``{id: object}``; or,
    when the file does not parse as one JSON value, JSON lines."""
    try:
        obj = json.loads(data.decode("utf-8-sig"))
    except json.JSONDecodeError:
        return read_jsonl(data)
    if isinstance(obj, dict):
        lists = [v for v in obj.values() if isinstance(v, list)]
        if len(lists) == 1 and len(obj) <= 3:
            obj = lists[0]
        elif obj and all(isinstance(v, dict) for v in obj.values()):
            obj = [{"id": k, **v} if "id" not in v else v for k, v in obj.items()]
        else:
            obj = [obj]
    if not isinstance(obj, list):
        raise ConfigError(f"manifest {uri!r} holds a JSON {type(obj).__name__}, not pairs")
    return [
        r
        if isinstance(r, dict)
        else BadRow(i, r, f"item {i} is a JSON {type(r).__name__}, not an object")
        for i, r in enumerate(obj)
    ]


def read_parquet(data: bytes) -> list[Record]:
    import pyarrow.parquet as pq

    return pq.read_table(io.BytesIO(data)).to_pylist()


def read_webdataset(uri: str, storage_options: dict[str, Any]) -> list[Record]:
    """Samples of one WebDataset shard, in tar order: ``{"__key__": "shard/key",
    "__url__": shard, "<ext>": "tar://<member>::<shard>", "json": {...}}``."""
    import fsspec

    shard = uri.rsplit("/", 1)[-1].rsplit(".", 1)[0]
    samples: dict[str, dict[str, Any]] = {}
    with fsspec.open(uri, "rb", **storage_options) as f, tarfile.open(fileobj=f, mode="r|*") as tar:
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
        BadRow(i, s, s["__bad__"]) if "__bad__" in s else s for i, s in enumerate(samples.values())
    ]


def read_records(uri: str, fmt: str, storage_options: dict[str, Any]) -> list[Record]:
    """Rows of one manifest file of format ``fmt``; ``ConfigError`` if it cannot be read."""
    if fmt == "webdataset":
        try:
            return read_webdataset(uri, storage_options)
        except (tarfile.TarError, FileNotFoundError) as e:
            raise ConfigError(f"manifest {uri!r} is not a readable tar shard: {e}") from None
    import pyarrow as pa

    data = _read_bytes(uri, storage_options)
    try:
        if fmt == "csv":
            return read_csv(data)
        if fmt == "jsonl":
            return read_jsonl(data)
        if fmt == "json":
            return read_json(data, uri)
        if fmt == "parquet":
            return read_parquet(data)
    except (UnicodeDecodeError, csv.Error, OSError, pa.ArrowException) as e:
        raise ConfigError(f"manifest {uri!r} cannot be read as {fmt}: {e}") from None
    raise ConfigError(
        f"unknown manifest format {fmt!r}; use csv, jsonl, json, parquet or webdataset"
    )
