"""CutClips: shot detection and clip cutting in ONE decode of each video (the default path).

IN: the probe columns. OUT: what DetectShots + MakeClips give (``shot_detector``, the clip
columns, ``frames``), minus the shot lists. Fan-out: 1 video -> N clips, yielded as their shots
end. Resources: 1 CPU task per video (``engine.clips``).

Why one decode: DetectShots decodes every frame, then MakeClips decodes the clip frames again,
so every kept frame is decoded twice. ``sama.video.cutting.cut_job`` feeds each decoded frame
to the detector (low resolution) and converts the frames of each shot's first clip once, to the
bucket size, in FFmpeg's scaler. It runs in the decode sandbox (``sama.sandbox``): the clip
frames come back in shared memory and go into the Arrow batch without a copy; a stall, a crash
or a blow-up in the decoder is an error row, and the clips made before it are kept.

``long_shot=multi`` and ``shots.max_shot_frames`` need whole shots first and use the two-pass
path (``BuildConfig.single_pass``). A clip row is only yielded once the next one is ready, so
the last row of a video can announce how many rows the video made (``input_rows``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

from pipelines.clips.columns import CLIP_COLUMNS, clip_columns
from pipelines.clips.make_clips import (
    CLIP_OUTPUTS,
    VIDEO_DROPS,
    VIDEO_INPUTS,
    clip_row,
    video_bucket,
)
from pipelines.engine.stage import PARENT, Row, Rows, Stage
from sama.errors import SampleError
from sama.sandbox import run_job
from sama.video.cutting import unusable


class CutClips(Stage):
    name = "cut_clips"
    engine_key = "clips"
    registry = CLIP_COLUMNS
    inputs = VIDEO_INPUTS
    outputs = (*clip_columns("shot_detector"), *CLIP_OUTPUTS)
    drops = VIDEO_DROPS

    def __init__(self, cfg) -> None:
        super().__init__(cfg)
        self.frames_decoded = 0  # for the benchmarks: every frame of the single pass
        self.frames_redecoded = 0  # clip frames decoded a second time (very late cuts)

    @classmethod
    def enabled(cls, cfg) -> bool:
        return cfg.single_pass()

    def describe_detector(self) -> str:
        shots = dataclasses.replace(self.cfg.shots, skip_loop_filter=False)
        return f"{shots.describe()} single_pass"

    def process(self, rows: Rows) -> Iterator[Rows]:
        for row in rows:
            for out in self._cut(row):
                yield [out]

    def _cut(self, row: Row) -> Iterator[Row]:
        """Clip rows as shots end, each held back until the next exists (module docstring)."""
        c, uri = self.cfg.clips, row["source_uri"]
        bucket = video_bucket(row, c.resolution)
        kwargs = dict(uri=uri, storage_options=self.cfg.input.storage_options, shots=self.cfg.shots,
                      num_frames=c.num_frames, min_frames=c.min_frames, bucket=bucket,
                      stage=self.name)  # fmt: skip
        held, made, end = None, 0, None
        detector = self.describe_detector()
        try:
            for item in run_job("sama.video.cutting:cut_job", kwargs, self.cfg.budget.for_uri(uri),
                                self.name):  # fmt: skip
                if "plan" not in item:
                    end = item
                    continue
                if held is not None:
                    yield held
                held = {PARENT: row[PARENT], **clip_row(row, item, bucket, 0),
                        "shot_detector": detector}  # fmt: skip
                made += 1
        except SampleError as e:  # clips made so far stay; the error row announces the count
            if held is not None:
                yield held
            yield self.fail(row, e) | {"input_rows": made + 1, "row_weight": 1}
            return
        self.frames_decoded += end["decoded"]
        self.frames_redecoded += end["redecoded"]
        if held is None:
            err = unusable(end["shot_lengths"], end["total"], c.shortest_clip, self.name)
            yield self.fail(row, err) | {"input_rows": 1, "row_weight": 1}
        else:
            yield held | {"input_rows": made}
