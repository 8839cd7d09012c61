"""Write bundles for the engine tests: clip rows (``tests/rows.py``: valid ``clips/v1`` rows
with tiny tensors) in the clip recipe's in-flight schema, as the last stage hands them to the
write task, and the write settings."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa

from datasets_spec import CLIPS
from pipelines.clips.columns import CLIP_COLUMNS
from pipelines.engine.apply import rows_to_table
from pipelines.engine.stage import ACCOUNTING_COLUMNS, ERROR_COLUMNS, schema_for
from pipelines.engine.writer import WriteSettings
from tests.rows import clip_row

PROV = {
    "spec": "clips/v1",
    "sama_version": "t",
    "vae": {"id": "x"},
    "latent_norm": {},
    "siglip": {},
    "anchor_policy": {},
    "frame_policy": {},
    "resolution_policy": {},
    "build_config": {"seed": 0},
    "black_latent": [0.0] * 16,
}
COLUMNS = (*CLIPS.column_names, "video_duration_s", *ACCOUNTING_COLUMNS, *ERROR_COLUMNS)
SCHEMA = schema_for(COLUMNS, CLIP_COLUMNS)


def clip(video: str, i: int, bucket=(48, 32), announce: int = 0) -> dict:
    """Clip ``i`` of ``video``; ``announce`` = the row count it announces (0 = none)."""
    row = clip_row(i, np.random.default_rng([ord(video[0]), i]))
    w, h = bucket
    return row | {
        "clip_id": f"{video}-s{i:03d}-c00",
        "video_id": video,
        "source_uri": f"/data/{video}.mp4",
        "bucket_width": w,
        "bucket_height": h,
        "video_duration_s": 10.0,
        "input_rows": announce,
        "row_weight": 1,
    }


def error(video: str, stage: str, kind: str, clip_id: str | None = None, weight: int = 1,
           announce: int = 1) -> dict:  # fmt: skip
    """An error row of ``video`` standing for ``weight`` rows."""
    return {
        "clip_id": clip_id,
        "video_id": video,
        "source_uri": f"/data/{video}.mp4",
        "video_duration_s": 10.0,
        "input_rows": announce,
        "row_weight": weight,
        "error_stage": stage,
        "error_kind": kind,
        "error_message": f"{video} failed in {stage}",
        "error_time": datetime(2026, 1, 2, tzinfo=UTC),
    }


def bundle(rows: list[dict]) -> pa.Table:
    return rows_to_table(rows, SCHEMA)


def settings(root: Path | str, **kw) -> WriteSettings:
    args = dict(root=str(root), storage_options={}, provenance=PROV, shard_bytes=10**9,
                row_group_rows=32, row_group_bytes=2**27, run_id="run1")  # fmt: skip
    return WriteSettings(**(args | kw))
