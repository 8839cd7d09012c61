"""ProbePairs: probe source and target, check they can be one pair (``sama.pairs.align_pair``).

IN: ``source_uri``, ``target_uri``, ``media_hint``, ``drop_first_frames``. OUT: the pair's plan
(``media_type``, ``start_frame``, ``num_frames``, ``fps``, ``orig_*``, ``bucket_*``) and each
side's video probe (``source_probe``/``target_probe``, JSON; null for images) so the decoder
needs no second probe. Fan-out 1:1. Resources: 1 CPU task per pair (``engine.probe``).

Errors (SAMA.md §4, issue 6: mismatches are error rows, not silent crops): a missing, empty or
undecodable side (``not_found``, ``zero_byte``, ``not_an_image``, ``not_a_video``...), and
``align_pair``'s ``mismatch`` (media type, frame count after the drop and the 4k+1 rule, aspect
bucket, fps) or ``too_short``. The message names the inner step (``read_image: ...``,
``align_pair: ...``).
"""

from __future__ import annotations

import json

from pipelines.clips.probe_videos import input_fs
from pipelines.engine.stage import Batch, Row, Stage
from pipelines.pairs.columns import PAIR_COLUMNS, pair_columns

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

    def process(self, batch: Batch) -> Batch:
        return self.map_rows(batch, self._probe)

    def _probe(self, row: Row) -> Row:
        from sama.pairs.align import align_pair, probe_media
        from sama.video.probe import VideoInfo

        opts = self.cfg.input.storage_options
        hint = row["media_hint"]
        src_uri, tgt_uri = row["source_uri"], row["target_uri"]
        source = probe_media(src_uri, hint, fs=input_fs(src_uri, opts))
        target = probe_media(tgt_uri, hint, fs=input_fs(tgt_uri, opts))
        plan = align_pair(
            source,
            target,
            drop_first_frames=int(row["drop_first_frames"] or 0),
            media_hint=hint,
            cfg=self.cfg.pairs.align,
        )

        def probe_json(info: object) -> str | None:
            return json.dumps(info.to_dict()) if isinstance(info, VideoInfo) else None

        return {
            **plan.to_row(),
            "source_probe": probe_json(source),
            "target_probe": probe_json(target),
        }
