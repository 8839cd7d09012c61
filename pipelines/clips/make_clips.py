"""MakeClips: cut 4k+1-frame clips from the shots, in the nearest aspect bucket (SAMA.md §1).

IN: the probe columns and the shot lists. OUT: one row per clip with its position
(``clip_id``, ``shot_*``, ``start_frame``, ``start_s``, ``num_frames``), its bucket, simple
statistics (``mean_luma``, ``motion_score``) and its frames (``frames``: uint8 T,H,W,3 at the
bucket size, for the encoders). Fan-out: 1 video -> N clips, yielded one clip at a time.
Resources: 1 CPU task per video.

Decoding: each video is streamed once (``sama.video.decode.iter_frames``) from the first clip
to the last; only a gap longer than ``clips.seek_gap_frames`` between two clips is skipped by
a seek (cheaper than decoding it). Each frame is cover-resized + centre-cropped to the bucket as
it arrives, so memory holds one clip at bucket size, never the video.

Shots shorter than a clip are skipped; a video with no usable shot is a ``no_usable_shot``
error row (``too_short`` if the whole video is shorter than a clip). If decoding fails midway,
the clips already made are kept and one error row stands for the rest (``row_weight``).

Legend: ``frame_HWC`` one RGB frame, ``clip_THWC`` the frames of one clip.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from pipelines.clips.probe_videos import input_fs, video_info
from pipelines.engine.stage import Batch, Row, Stage, clip_columns, is_error
from sama.errors import ErrorKind, SampleError
from sama.video.frames import clip_starts, floor_4k1

_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # BT.601


@dataclass(frozen=True)
class ClipPlan:
    shot_index: int
    clip_index: int
    shot_start: int
    shot_end: int
    start: int
    num_frames: int

    @property
    def end(self) -> int:
        return self.start + self.num_frames


def plan_clips(
    shot_starts: list[int],
    shot_ends: list[int],
    num_frames: int,
    long_shot: str = "first",
    min_frames: int = 0,
    max_clips_per_shot: int = 0,
) -> list[ClipPlan]:
    """The clips of a video: per shot, ``clip_starts`` clips of ``num_frames`` frames, or one
    ``floor_4k1(len)`` clip if the shot is shorter but has ``min_frames`` (> 0)."""
    plans = []
    for s, (a, b) in enumerate(zip(shot_starts, shot_ends, strict=True)):
        length = b - a
        if length >= num_frames:
            starts, n = clip_starts(length, num_frames, long_shot), num_frames
            if max_clips_per_shot:
                starts = starts[:max_clips_per_shot]
        elif min_frames and length >= min_frames:
            starts, n = [0], floor_4k1(length)
        else:
            continue
        plans += [ClipPlan(s, c, a, b, a + st, n) for c, st in enumerate(starts)]
    return plans


def decode_runs(plans: list[ClipPlan], seek_gap_frames: int) -> list[list[ClipPlan]]:
    """Group clips (in frame order) into runs decoded as one stream; a longer gap splits."""
    runs: list[list[ClipPlan]] = []
    for p in sorted(plans, key=lambda p: p.start):  # clips never overlap (see plan_clips)
        if runs and p.start - runs[-1][-1].end <= seek_gap_frames:
            runs[-1].append(p)
        else:
            runs.append([p])
    return runs


def clip_stats(clip_THWC: np.ndarray) -> tuple[float, float]:
    """(mean luma, mean |luma difference| of consecutive frames), both on a 0-255 scale."""
    luma_THW = clip_THWC.astype(np.float32) @ _LUMA
    motion = float(np.abs(np.diff(luma_THW, axis=0)).mean()) if len(luma_THW) > 1 else 0.0
    return float(luma_THW.mean()), motion


PROBE_EXTRAS = ("video_num_frames", "video_duration_s", "video_codec", "video_rotation",
                "video_size_bytes", "video_backend")  # fmt: skip
VIDEO_INPUTS = (*clip_columns("video_id", "source_uri", "fps", "orig_width", "orig_height"),
                *PROBE_EXTRAS)  # fmt: skip
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


def clip_row(
    row: Row, plan: ClipPlan, bucket: tuple[int, int], clip_THWC: np.ndarray, input_rows: int
) -> Row:
    """The clip columns of one clip of the video ``row`` (``input_rows``: see stages.base)."""
    luma, motion = clip_stats(clip_THWC)
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
        "mean_luma": luma,
        "motion_score": motion,
        "frames": clip_THWC.tobytes(),
        "frames_shape": list(clip_THWC.shape),
        "input_rows": input_rows,
        "row_weight": 1,
    }


def unusable(shot_lengths: list[int], total: int, need: int, stage: str) -> SampleError:
    """Why a video gave no clip: too short as a whole, or no shot long enough."""
    if total < need:
        return SampleError(
            ErrorKind.TOO_SHORT, f"{total} decodable frames, a clip needs {need}", stage=stage
        )
    return SampleError(
        ErrorKind.NO_USABLE_SHOT,
        f"{len(shot_lengths)} shots, the longest has {max(shot_lengths, default=0)} frames, "
        f"a clip needs {need}",
        stage=stage,
    )


def stream_frames(
    row: Row, start: int, count: int, storage_options: dict
) -> Iterator[tuple[int, np.ndarray]]:
    """``(index, frame_HWC)`` for frames ``start .. start+count-1`` of the video ``row``."""
    from sama.video.decode import iter_frames

    uri = row["source_uri"]
    frames = iter_frames(uri, start=start, count=count, info=video_info(row),
                         fs=input_fs(uri, storage_options))  # fmt: skip
    return enumerate(frames, start=start)


def take_clip(
    frames: Iterator[tuple[int, np.ndarray]], plan: ClipPlan, bucket: tuple[int, int]
) -> np.ndarray:
    """Consume the stream up to the end of ``plan``; its frames resized into the bucket."""
    from sama.video.buckets import resize_crop

    w, h = bucket
    clip_THWC = np.empty((plan.num_frames, h, w, 3), dtype=np.uint8)
    got = 0
    for idx, frame_HWC in frames:
        if idx >= plan.start:
            clip_THWC[idx - plan.start] = resize_crop(frame_HWC, bucket)
            got += 1
        if idx + 1 >= plan.end:
            break
    if got < plan.num_frames:
        raise SampleError(
            ErrorKind.TRUNCATED,
            f"the video ended after {got} of the {plan.num_frames} frames of the clip at "
            f"frame {plan.start}",
            stage="decode",
        )
    return clip_THWC


class MakeClips(Stage):
    name = "make_clips"
    engine_key = "clips"
    inputs = (*VIDEO_INPUTS, "shot_starts", "shot_ends")
    outputs = CLIP_OUTPUTS
    drops = ("shot_starts", "shot_ends", *PROBE_EXTRAS)

    def __init__(self, cfg) -> None:
        super().__init__(cfg)
        self.frames_decoded = 0  # frames this instance decoded (for the benchmarks)

    @classmethod
    def enabled(cls, cfg) -> bool:
        return not cfg.single_pass()

    def process(self, batch: Batch) -> Iterator[Batch]:
        for row in batch:
            if is_error(row):
                yield [self.passthrough(row)]
                continue
            try:
                plans = self._plan(row)
            except SampleError as e:
                yield [self.fail(row, e)]
                continue
            for out in self._clips(row, plans):
                yield [out]

    def _plan(self, row: Row) -> list[ClipPlan]:
        c = self.cfg.clips
        plans = plan_clips(row["shot_starts"], row["shot_ends"], c.num_frames, c.long_shot,
                           c.min_frames, c.max_clips_per_shot)  # fmt: skip
        if not plans:
            lengths = [b - a for a, b in zip(row["shot_starts"], row["shot_ends"], strict=True)]
            total = row["shot_ends"][-1] if row["shot_ends"] else 0
            raise unusable(lengths, total, c.shortest_clip, self.name)
        return plans

    def _clips(self, row: Row, plans: list[ClipPlan]) -> Iterator[Row]:
        bucket = video_bucket(row, self.cfg.clips.resolution)
        made = 0
        try:
            for run in decode_runs(plans, self.cfg.clips.seek_gap_frames):
                start, count = run[0].start, run[-1].end - run[0].start
                frames = self._count(
                    stream_frames(row, start, count, self.cfg.input.storage_options)
                )
                for plan in run:
                    clip_THWC = take_clip(frames, plan, bucket)
                    yield self.merge(row, clip_row(row, plan, bucket, clip_THWC, len(plans)))
                    made += 1
        except SampleError as e:  # the clips made so far stay; one error row for the rest
            yield self.fail(row, e, weight=len(plans) - made) | {"input_rows": len(plans)}

    def _count(self, frames: Iterator[tuple[int, np.ndarray]]) -> Iterator[tuple[int, np.ndarray]]:
        for item in frames:
            self.frames_decoded += 1
            yield item
