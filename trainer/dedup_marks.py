"""Which clips a root's ``dedup/v1`` table marks as near-duplicates, for the loader's index.

``sama dedup ROOT`` writes the table beside the shards (``ROOT/dedup/``; a published repo:
``ROOT/data/dedup/``, both found by ``sama.shards.list_shards``); the marked clips stay in the
shards, and the loader leaves them out (``data.skip_duplicates``, ``trainer/shard_index.py``).
The table is untrusted input like a shard: its declared spec, schema, bounded provenance and
row-group sizes are checked (``datasets_spec.checks``) before its ``clip_id`` column is read,
and a table that fails is refused at start-up with the fix.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from datasets_spec import SchemaError
from datasets_spec.checks import Limits, check_dedup_footer
from sama.errors import ConfigError
from sama.shards import list_shards, url_to_fs
from trainer.shard_cache import version_of


@dataclass(frozen=True)
class Marks:
    """The clip ids a source's dedup table marks, and what identifies the table's files."""

    clip_ids: frozenset[str]
    files: tuple[tuple[str, int, str], ...]  # (uri, size, version): the index cache key


def load_marks(src: Any, i: int, limits: Limits = Limits()) -> Marks | None:
    """The dedup table of a clips source's root, checked before its ids are read; None when
    it has none. ``ConfigError`` naming the file and the fix when it is refused."""
    if src.kind != "clips" or src.uri.endswith(".parquet"):
        return None
    ids, files = set(), []
    for uri in list_shards(src.uri, "dedup"):
        fs, path = url_to_fs(uri)
        info = fs.info(path)
        try:
            with fs.open(path, "rb") as f:
                pf = pq.ParquetFile(f)
                _, sizes = check_dedup_footer(pf, limits)
                if sizes:
                    raise SchemaError("; ".join(sizes))
                col = pf.read(columns=["clip_id"]).column(0)
        except (SchemaError, pa.ArrowException, OSError, EOFError) as e:
            raise ConfigError(
                f"data.sources[{i}]: the dedup table {uri} is refused: {e}. Run `sama validate "
                f"{src.uri}`, or set data.skip_duplicates=false to train on every clip"
            ) from None
        ids.update(x for x in col.to_pylist() if x is not None)
        files.append((uri, int(info.get("size") or 0), version_of(info)))
    return Marks(frozenset(ids), tuple(files)) if files else None


def log_marks(sources: Sequence[Any], skip: bool, skipped: int) -> None:
    """Say (stderr, rank 0) how many clips the dedup tables took out, or that they were not."""
    if skipped:
        print(f"data: skipped {skipped} clips marked as near-duplicates by the dedup table of "
              "their root (data.skip_duplicates=false keeps them)", file=sys.stderr, flush=True)  # fmt: skip
    elif not skip:
        roots = {s.uri for s in sources if s.kind == "clips" and not s.uri.endswith(".parquet")}
        if any(list_shards(r, "dedup") for r in sorted(roots)):
            print("data: data.skip_duplicates=false: training on every clip, the clips the dedup "
                  "table marks included", file=sys.stderr, flush=True)  # fmt: skip
