"""ProbePairs: probe source and target, check they can be one pair (``sama.pairs.align_pair``).

IN: ``source_uri``, ``target_uri``, ``media_hint``, ``drop_first_frames``. OUT: the pair's plan
(``media_type``, ``start_frame``, ``num_frames``, ``fps``, ``orig_*``, ``bucket_*``) and each
side's video probe (``source_probe``/``target_probe``, JSON; null for images) so the decoder
needs no second probe. Fan-out 1:1. Resources: 1 CPU task per pair (``engine.probe``); the
probing runs in the decode sandbox (``sama.pairs.align.pair_probe_job``, budget-bounded).

Errors (SAMA.md §4: mismatches are error rows, not silent crops): a missing, empty or
undecodable side (``not_found``, ``zero_byte``, ``not_an_image``, ``not_a_video``...),
``align_pair``'s ``mismatch`` (media type, frame count after the drop and the 4k+1 rule, aspect
bucket, fps) or ``too_short``, a side over the budget (``too_large``), a stall (``timeout``).
"""

from __future__ import annotations

import json

from pipelines.engine.stage import Row, Rows, Stage
from pipelines.pairs.columns import PAIR_COLUMNS, pair_columns
from sama.sandbox import run_job

PLAN_COLUMNS = pair_columns(
    "media_type", "start_frame", "num_frames", "fps", "orig_width", "orig_height",
    "bucket_width", "bucket_height",
)  # fmt: skip


class ProbePairs(Stage):
    name = "probe_pairs"
    engine_key = "probe"
    registry = PAIR_COLUMNS
    inputs = (*pair_columns("source_uri", "target_uri"), "media_hint", "drop_first_frames")
    outputs = (*PLAN_COLUMNS, "source_probe", "target_probe")
    drops = ("media_hint", "drop_first_frames")

    def process(self, rows: Rows) -> Rows:
        return self.map_rows(rows, self._probe)

    def _probe(self, row: Row) -> Row:
        b = self.cfg.budget
        kwargs = dict(source_uri=row["source_uri"], target_uri=row["target_uri"],
                      media_hint=row["media_hint"], drop_first_frames=int(row["drop_first_frames"] or 0),
                      cfg=self.cfg.pairs.align, storage_options=self.cfg.input.storage_options,
                      max_pixels=b.max_pixels, max_frames=b.max_frames)  # fmt: skip
        (out,) = run_job("sama.pairs.align:pair_probe_job", kwargs, b.for_uri(row["source_uri"]),
                         self.name)  # fmt: skip
        return {
            **out["plan"],
            "source_probe": None if out["source_probe"] is None else json.dumps(out["source_probe"]),
            "target_probe": None if out["target_probe"] is None else json.dumps(out["target_probe"]),
        }
