"""The pair build's listing: one row per manifest row (``sama.pairs.iter_pair_chunks``), streamed.

OUT (the inputs table, ``engine/listing.py``): the ``pairs/v1`` columns the manifest gives
(``pair_id``, ``corpus``, ``source_uri``, ``target_uri``, ``instruction``, and judge scores when
the manifest carries them, ``judge_model="manifest"``), ``input_uri`` (``manifest#row``),
``media_hint``, ``drop_first_frames`` (OpenVE-3M: 4, SAMA.md §4), row accounting and the error
fields. A row that cannot be a pair (``BadRow``: no source/target, empty instruction, broken
JSON line) is a ``bad_manifest_row`` error row; a side outside the allowed roots
(``sama.confine``: ``input.allowed_roots``/``allowed_schemes``, default the manifest's folder
and scheme plus ``pairs.base_uri``) is ``not_allowed``; duplicate ids are marked by the engine.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa

from pipelines.engine.apply import rows_to_table
from pipelines.engine.stage import ACCOUNTING_COLUMNS, ERROR_COLUMNS, schema_for
from pipelines.pairs.columns import PAIR_COLUMNS, SCORE_COLUMNS, pair_columns
from sama.confine import Confinement
from sama.errors import ErrorKind
from sama.pairs.fields import folder_of, join_uri
from sama.pairs.manifest import BadRow, PairItem, effective_config, iter_pair_chunks

STAGE = "list_pairs"
MANIFEST_JUDGE = "manifest"  # judge_model of scores that came with the manifest
OUTPUTS = (
    *pair_columns("pair_id", "corpus", "source_uri", "target_uri", "instruction"),
    *pair_columns(*SCORE_COLUMNS.values(), "judge_model"),
    "input_uri",
    "media_hint",
    "drop_first_frames",
    *ACCOUNTING_COLUMNS,
    *ERROR_COLUMNS,
)


def confinement(cfg: Any) -> Confinement:
    """What a pair manifest's entries may name: its folder and scheme, and its base."""
    m = effective_config(cfg.pair_manifest())
    first = m.uri.split("*", 1)[0]
    c = Confinement.for_manifest(first if first.endswith("/") else m.uri, cfg.input.allowed_roots,
                                 cfg.input.allowed_schemes)  # fmt: skip
    if m.base_uri and not cfg.input.allowed_roots:
        base = join_uri(folder_of(m.uri), m.base_uri).rstrip("/")
        c = Confinement((*c.roots, base), c.schemes)
    return c


def list_pairs(cfg: Any) -> Iterator[pa.Table]:
    """The pairs of the manifest(s) as typed tables of ``OUTPUTS``."""
    schema = schema_for(OUTPUTS, PAIR_COLUMNS)
    confine = confinement(cfg)
    for chunk in iter_pair_chunks(cfg.pair_manifest()):
        yield rows_to_table([_row(item, confine) for item in chunk], schema)


def _row(item: PairItem | BadRow, confine: Confinement) -> dict:
    if isinstance(item, BadRow):
        return _bad(item.item_id, item.input_uri, ErrorKind.BAD_MANIFEST_ROW, item.message)
    for uri in (item.source_uri, item.target_uri):
        refused = confine.check(uri)
        if refused:
            return _bad(item.pair_id, item.input_uri, ErrorKind.NOT_ALLOWED,
                        f"manifest row {item.row_index}: {refused}")  # fmt: skip
    scores = item.scores or {}
    return {
        **item.to_row(),
        **{col: scores.get(key) for key, col in SCORE_COLUMNS.items()},
        "judge_model": MANIFEST_JUDGE if scores else None,
        "input_uri": item.input_uri,
        "media_hint": item.media_type,
        "drop_first_frames": item.drop_first_frames,
        "input_rows": 1,
        "row_weight": 1,
    }


def _bad(pair_id: str, input_uri: str, kind: ErrorKind, message: str) -> dict:
    return {"pair_id": pair_id, "input_uri": input_uri, "input_rows": 1, "row_weight": 1,
            "error_stage": STAGE, "error_kind": kind.value, "error_message": message,
            "error_time": datetime.now(UTC)}  # fmt: skip
