"""``pairs/v1`` shards: the clip build's shard writer with pair records (``pipelines/engine/writer.py``).

Row groups hold one latent shape: rows are grouped by media type, frame count and bucket (an
image pair and a video pair in one bucket have different latent lengths), so a reader batches a
row group without mixing shapes. Error rows are ``errors/v1`` with ``record_kind="pairs"``, the
pair id as ``item_id`` and the manifest row (``manifest#row``) as ``input_uri``.
"""

from __future__ import annotations

from datasets_spec import PAIRS_V1
from pipelines.engine.writer import Row, ShardWriter


def pair_record(row: Row) -> Row:
    """A ``pairs/v1`` row from a pipeline row (in-flight columns dropped)."""
    return {name: row.get(name) for name in PAIRS_V1.column_names}


def pair_error_id(row: Row) -> str:
    return f"{row['pair_id']}:{row['error_stage']}"


def pair_error_record(row: Row) -> Row:
    """An ``errors/v1`` row from a pair pipeline error row."""
    return {
        "error_id": pair_error_id(row),
        "input_uri": row.get("input_uri") or row.get("source_uri") or "",
        "item_id": row["pair_id"],
        "record_kind": "pairs",
        "stage": row["error_stage"],
        "kind": row["error_kind"],
        "message": row["error_message"],
        "time": row["error_time"],
    }


class PairShardWriter(ShardWriter):
    spec = PAIRS_V1
    owner_column = "pair_id"

    def record(self, row: Row) -> Row:
        return pair_record(row)

    def error(self, row: Row) -> Row:
        return pair_error_record(row)

    def group_key(self, rec: Row) -> tuple:
        return (rec["media_type"], rec["num_frames"], rec["bucket_width"], rec["bucket_height"])
