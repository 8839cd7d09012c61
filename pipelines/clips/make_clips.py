"""MakeClips: the clips of every shot, second pass of two (``long_shot=multi``, SAMA.md §1).

IN: the probe columns and the shot lists. OUT: one row per planned clip with its position
(``clip_id``, ``shot_*``, ``start_frame``, ``start_s``, ``num_frames``), its bucket, simple
statistics (``mean_luma``, ``motion_score``) and its frames (``frames``: uint8 T,H,W,3 at the
bucket size, for the encoders). Fan-out: 1 video -> N rows, yielded one at a time. Resources:
1 CPU task per video (``engine.clips``).

``sama.video.cut_jobs.make_job``, in the decode sandbox, streams each video once from the first
clip to the last (a long gap is a seek). Each clip is finished on its own frames
(``sama.video.cutting.finish_clip``): kept, trimmed by the clean-clip guard (``guard.*``), or
dropped, as an error row of stage ``clean_clip`` (kind ``not_clean``) or ``filter`` (kind
``filtered_*``, ``filters.*``), under the clip's own id, so every clip is accounted for. A
damaged source gets one ``salvaged`` note row. If decoding fails midway, the clips made stay and
one error row stands for the rest. The rows of one video are built by ``video_rows``, which both
clip-making stages share; its last row announces how many rows the video made.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import UTC, datetime

from pipelines.clips.columns import CLIP_COLUMNS, clip_columns
from pipelines.clips.probe_videos import PROBE_EXTRAS, video_info
from pipelines.engine.stage import PARENT, Row, Rows, Stage
from sama.errors import ErrorKind, SampleError
from sama.sandbox import run_job
from sama.video.cutting import ClipPlan, CutSpec, plan_clips, unusable

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


def cut_spec(cfg, row: Row) -> CutSpec:
    """How the clips of the video ``row`` are cut and checked."""
    c = cfg.clips
    return CutSpec(c.num_frames, c.min_frames, video_bucket(row, c.resolution), float(row["fps"]),
                   cfg.guard, cfg.filters)  # fmt: skip


def clip_id(row: Row, plan: ClipPlan) -> str:
    return f"{row['video_id']}-s{plan.shot_index:03d}-c{plan.clip_index:02d}"


def clip_row(row: Row, item: dict, bucket: tuple[int, int]) -> Row:
    """The clip columns of one kept clip ``item`` (a cutting job's yield) of the video ``row``."""
    plan: ClipPlan = item["plan"]
    frames = item["frames"]
    return {
        PARENT: row[PARENT],
        "clip_id": clip_id(row, plan),
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
        "input_rows": 0,
        "row_weight": 1,
    }


def note_row(row: Row, stage: str, kind: str, message: str, **extra) -> Row:
    """An errors-table row of the video ``row`` that is not the stage's own failure: a dropped
    clip (stage ``clean_clip`` / ``filter``) or a ``salvaged`` note (stage ``salvage``)."""
    return {PARENT: row[PARENT], "error_stage": stage, "error_kind": kind, "error_message": message,
            "error_time": datetime.now(UTC), "input_rows": 0, "row_weight": 1, **extra}  # fmt: skip


def video_rows(stage: Stage, row: Row, items: Iterable[dict], bucket: tuple[int, int],
               planned: int | None = None, extra: dict | None = None) -> Iterator[Row]:  # fmt: skip
    """The rows of one video from a cutting job's items (module docstring). ``planned``: the
    clips planned (the two-pass path); a failure then stands for those not made."""
    held, total, made, end = None, 0, 0, {}

    def put(r: Row) -> Row | None:
        nonlocal held, total
        prev, held = held, r
        total += r["row_weight"]
        return prev

    rows: list[Row] = []
    try:
        for item in items:
            if "plan" not in item:
                end = item
                continue
            made += 1
            if "drop" in item:
                kind, where, message = item["drop"]
                r = note_row(row, where, kind, message, clip_id=clip_id(row, item["plan"]))
            else:
                r = clip_row(row, item, bucket) | (extra or {})
            if (prev := put(r)) is not None:
                yield prev
    except SampleError as e:
        weight = planned - made if planned is not None else 1
        rows.append(stage.fail(row, e) | {"row_weight": max(1, weight), "input_rows": 0})
    note = "; ".join(n for n in (row.get("video_salvage"), end.get("salvage")) if n)
    if note:
        rows.append(note_row(row, "salvage", ErrorKind.SALVAGED.value, note))
    for r in rows:
        if (prev := put(r)) is not None:
            yield prev
    if held is None:
        err = unusable(end.get("shot_lengths", []), end.get("total", 0),
                       stage.cfg.clips.shortest_clip, stage.name)  # fmt: skip
        held, total = stage.fail(row, err) | {"row_weight": 1}, 1
    yield held | {"input_rows": total}


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
        c = self.cfg.clips
        for row in rows:
            plans = plan_clips(row["shot_starts"], row["shot_ends"], c.num_frames, c.long_shot,
                               c.min_frames, c.max_clips_per_shot)  # fmt: skip
            if not plans:
                lengths = [b - a for a, b in zip(row["shot_starts"], row["shot_ends"], strict=True)]
                total = row["shot_ends"][-1] if row["shot_ends"] else 0
                yield [self.fail(row, unusable(lengths, total, c.shortest_clip, self.name))
                       | {"input_rows": 1, "row_weight": 1}]  # fmt: skip
                continue
            spec = cut_spec(self.cfg, row)
            uri = row["source_uri"]
            kwargs = dict(uri=uri, storage_options=self.cfg.input.storage_options,
                          info=video_info(row), plans=plans, spec=spec,
                          seek_gap_frames=c.seek_gap_frames, damaged=bool(row.get("video_salvage")))  # fmt: skip
            items = run_job("sama.video.cut_jobs:make_job", kwargs, self.cfg.budget.for_uri(uri),
                            self.name)  # fmt: skip
            for out in video_rows(self, row, self._count(items), spec.bucket, planned=len(plans)):
                yield [out]

    def _count(self, items: Iterable[dict]) -> Iterator[dict]:
        for item in items:
            if "frames" in item:
                self.frames_decoded += item["plan"].num_frames
            yield item
