"""MakeClips: cut 4k+1-frame clips from the shots, in the nearest aspect bucket (SAMA.md §1).

IN: the probe columns and the shot lists. OUT: one row per clip with its position
(``clip_id``, ``shot_*``, ``start_frame``, ``start_s``, ``num_frames``), its bucket, simple
statistics (``mean_luma``, ``motion_score``) and its frames (``frames``: uint8 T,H,W,3 at the
bucket size, for the encoders). Fan-out: 1 video -> N clips, yielded one clip at a time.
Resources: 1 CPU task per video (``engine.clips``).

This is the second pass of the two-pass path (``long_shot=multi``, ``shots.max_shot_frames``):
``sama.video.cutting.make_job``, in the decode sandbox, streams each video once from the first
clip to the last (a long gap is a seek). Shots shorter than a clip are skipped; a video with no
usable shot is a ``no_usable_shot`` error row. If decoding fails midway (or runs out of time),
the clips already made are kept and one error row stands for the rest (``row_weight``).

The clip row fields every clip-making stage shares are built here (``clip_row``).
"""

from __future__ import annotations

from collections.abc import Iterator

from pipelines.clips.columns import CLIP_COLUMNS, clip_columns
from pipelines.clips.probe_videos import PROBE_EXTRAS, video_info
from pipelines.engine.stage import Row, Rows, Stage
from sama.errors import SampleError
from sama.sandbox import run_job
from sama.video.cutting import ClipPlan, plan_clips, unusable

VIDEO_INPUTS = (*clip_columns("video_id", "source_uri", "fps", "orig_width", "orig_height"),
                *PROBE_EXTRAS)  # fmt: skip
# the source's duration travels on to the writer (hours of video processed, per input)
VIDEO_DROPS = tuple(c for c in PROBE_EXTRAS if c != "video_duration_s")
CLIP_OUTPUTS = (
    *clip_columns("clip_id", "shot_index", "clip_index", "shot_start_frame", "shot_end_frame",
                  "start_frame", "start_s", "num_frames", "bucket_width", "bucket_height",
                  "mean_luma", "motion_score"),
    "frames",
    "frames_shape",
    "input_rows",
    "row_weight",
)  # fmt: skip


def video_bucket(row: Row, resolution: int) -> tuple[int, int]:
    """The aspect bucket (W, H) of a probed video (all its clips share it)."""
    from sama.video.buckets import buckets_for, nearest_bucket

    return nearest_bucket(row["orig_width"], row["orig_height"], buckets_for(resolution))


def clip_row(row: Row, item: dict, bucket: tuple[int, int], input_rows: int) -> Row:
    """The clip columns of one clip ``item`` (a cutting job's yield) of the video ``row``."""
    plan: ClipPlan = item["plan"]
    frames = item["frames"]
    return {
        "clip_id": f"{row['video_id']}-s{plan.shot_index:03d}-c{plan.clip_index:02d}",
        "shot_index": plan.shot_index,
        "clip_index": plan.clip_index,
        "shot_start_frame": plan.shot_start,
        "shot_end_frame": plan.shot_end,
        "start_frame": plan.start,
        "start_s": plan.start / row["fps"],
        "num_frames": plan.num_frames,
        "bucket_width": bucket[0],
        "bucket_height": bucket[1],
        "mean_luma": item["luma"],
        "motion_score": item["motion"],
        "frames": frames,
        "frames_shape": list(frames.shape),
        "input_rows": input_rows,
        "row_weight": 1,
    }


class MakeClips(Stage):
    name = "make_clips"
    engine_key = "clips"
    registry = CLIP_COLUMNS
    inputs = (*VIDEO_INPUTS, "shot_starts", "shot_ends")
    outputs = CLIP_OUTPUTS
    drops = ("shot_starts", "shot_ends", *VIDEO_DROPS)

    def __init__(self, cfg) -> None:
        super().__init__(cfg)
        self.frames_decoded = 0  # frames of the clips this instance cut (for the benchmarks)

    @classmethod
    def enabled(cls, cfg) -> bool:
        return not cfg.single_pass()

    def process(self, rows: Rows) -> Iterator[Rows]:
        for row in rows:
            c = self.cfg.clips
            plans = plan_clips(row["shot_starts"], row["shot_ends"], c.num_frames, c.long_shot,
                               c.min_frames, c.max_clips_per_shot)  # fmt: skip
            if not plans:
                lengths = [b - a for a, b in zip(row["shot_starts"], row["shot_ends"], strict=True)]
                total = row["shot_ends"][-1] if row["shot_ends"] else 0
                yield [self.fail(row, unusable(lengths, total, c.shortest_clip, self.name))
                       | {"input_rows": 1, "row_weight": 1}]  # fmt: skip
                continue
            for out in self._clips(row, plans):
                yield [out]

    def _clips(self, row: Row, plans: list[ClipPlan]) -> Iterator[Row]:
        bucket = video_bucket(row, self.cfg.clips.resolution)
        uri, made = row["source_uri"], 0
        kwargs = dict(uri=uri, storage_options=self.cfg.input.storage_options, info=video_info(row),
                      plans=plans, bucket=bucket, seek_gap_frames=self.cfg.clips.seek_gap_frames)  # fmt: skip
        try:
            for item in run_job("sama.video.cutting:make_job", kwargs,
                                self.cfg.budget.for_uri(uri), self.name):  # fmt: skip
                self.frames_decoded += item["plan"].num_frames
                made += 1
                yield {"_parent": row["_parent"], **clip_row(row, item, bucket, len(plans))}
        except SampleError as e:  # the clips made so far stay; one error row for the rest
            yield self.fail(row, e, weight=len(plans) - made) | {"input_rows": len(plans)}
