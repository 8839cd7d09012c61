"""``errors/v1``: one row per input (or item) that could not be processed."""

from __future__ import annotations

import pyarrow as pa

from datasets_spec.base import Column, RecordSpec

ERRORS_V1 = RecordSpec(
    kind="errors",
    version="v1",
    key="error_id",
    description="Every input of a build that did not become a clip or pair, with why.",
    fields=(
        Column("error_id", pa.string(), "unique id: `{item_id}:{stage}`", "any"),
        Column("input_uri", pa.string(), "URI of the failed input (or manifest row)", "any"),
        Column("item_id", pa.string(), "video / pair id of the input", "any"),
        Column("record_kind", pa.string(), "what the input was meant to become: `clips` or "
               "`pairs`", "any"),
        Column("stage", pa.string(), "stage that failed (e.g. `probe`, `detect_shots`)", "any"),
        Column("kind", pa.string(), "error kind (`sama.errors.ErrorKind`)", "any"),
        Column("message", pa.string(), "human-readable message", "any"),
        Column("time", pa.timestamp("us", tz="UTC"), "when the error was recorded", "any", "UTC"),
    ),
)
