"""LoadPairFrames: decode the same frames of source and target into the pair's bucket.

IN: the plan columns of ``ProbePairs`` and the probes. OUT: ``source_frames``,
``target_frames`` (uint8 T,H,W,3 raw bytes, T = ``num_frames``: 4k+1 from ``start_frame`` for
videos, 1 for images) and their shared ``frames_shape``. Fan-out 1:1. Resources: 1 CPU task per
pair (``engine.clips``, the clip build's decode tasks).

The decoding is ``sama.pairs.frames.load_pair_frames``; a video that ends early is a
``truncated`` error row.
"""

from __future__ import annotations

import json

from pipelines.clips.probe_videos import input_fs
from pipelines.engine.stage import Batch, Row, Stage
from pipelines.pairs.columns import PAIR_COLUMNS, pair_columns
from pipelines.pairs.probe_pairs import PLAN_COLUMNS


def plan_of(row: Row):
    """The ``sama.pairs.PairPlan`` a probed row describes."""
    from sama.pairs.align import PairPlan

    return PairPlan(
        media_type=row["media_type"],
        start_frame=row["start_frame"],
        num_frames=row["num_frames"],
        fps=row["fps"],
        bucket=(row["bucket_width"], row["bucket_height"]),
        source_size=(row["orig_width"], row["orig_height"]),
        target_size=(row["orig_width"], row["orig_height"]),  # not needed to decode
    )


def _info(probe: str | None):
    from sama.video.probe import VideoInfo

    return None if probe is None else VideoInfo(**json.loads(probe))


class LoadPairFrames(Stage):
    name = "load_pair_frames"
    engine_key = "clips"
    registry = PAIR_COLUMNS
    inputs = (*pair_columns("source_uri", "target_uri"), *PLAN_COLUMNS,
              "source_probe", "target_probe")  # fmt: skip
    outputs = ("source_frames", "target_frames", "frames_shape")
    drops = ("source_probe", "target_probe")

    def process(self, batch: Batch) -> Batch:
        return self.map_rows(batch, self._load)

    def _load(self, row: Row) -> Row:
        from sama.pairs.frames import load_pair_frames

        src, tgt = row["source_uri"], row["target_uri"]
        opts = self.cfg.input.storage_options
        fs = input_fs(src, opts) if opts else None
        source_THWC, target_THWC = load_pair_frames(
            src,
            tgt,
            plan_of(row),
            (_info(row["source_probe"]), _info(row["target_probe"])),
            fs,
        )
        return {
            "source_frames": source_THWC.tobytes(),
            "target_frames": target_THWC.tobytes(),
            "frames_shape": list(source_THWC.shape),
        }
