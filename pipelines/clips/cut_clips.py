"""CutClips: shot detection and clip cutting in ONE decode of each video (the default path).

IN: the probe columns. OUT: what DetectShots + MakeClips give (``shot_detector``, the clip
columns, ``frames``), minus the shot lists. Fan-out: 1 video -> N rows, yielded as their shots
end. Resources: 1 CPU task per video (``engine.clips``).

Why one decode: DetectShots decodes every frame, then MakeClips decodes the clip frames again,
so every kept frame is decoded twice. ``sama.video.cut_jobs.cut_job`` feeds each decoded frame
to the boundary detector (low resolution) and converts the frames of each shot's first clip
once, to the bucket size, in FFmpeg's scaler. It runs in the decode sandbox (``sama.sandbox``):
the clip frames come back in shared memory and go into the Arrow batch without a copy; a stall,
a crash or a blow-up in the decoder is an error row, and the clips made before it are kept.
Corrupt packets are skipped (salvage): their frames are a boundary, never inside a clip, and a
``salvaged`` note row says what was lost. Candidate clips are finished as in MakeClips (guard,
filters: ``pipelines/clips/make_clips.py``).

``long_shot=multi`` and ``shots.max_shot_frames`` need whole shots first and use the two-pass
path (``BuildConfig.single_pass``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator

from pipelines.clips.columns import CLIP_COLUMNS, clip_columns
from pipelines.clips.make_clips import CLIP_OUTPUTS, VIDEO_DROPS, VIDEO_INPUTS, cut_spec, video_rows
from pipelines.engine.stage import Rows, Stage
from sama.sandbox import run_job


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
        self.frames_redecoded = 0  # clip frames decoded a second time (very late boundaries)

    @classmethod
    def enabled(cls, cfg) -> bool:
        return cfg.single_pass()

    def describe_detector(self) -> str:
        shots = dataclasses.replace(self.cfg.shots, skip_loop_filter=False)
        return f"{shots.describe()} single_pass"

    def process(self, rows: Rows) -> Iterator[Rows]:
        for row in rows:
            spec = cut_spec(self.cfg, row)
            uri = row["source_uri"]
            kwargs = dict(uri=uri, storage_options=self.cfg.input.storage_options,
                          shots=self.cfg.shots, spec=spec, stage=self.name)  # fmt: skip
            items = run_job("sama.video.cut_jobs:cut_job", kwargs, self.cfg.budget.for_uri(uri),
                            self.name)  # fmt: skip
            detector = {"shot_detector": self.describe_detector()}
            for out in video_rows(self, row, self._count(items), spec.bucket, extra=detector):
                yield [out]

    def _count(self, items: Iterable[dict]) -> Iterator[dict]:
        for item in items:
            if "decoded" in item:
                self.frames_decoded += item["decoded"]
                self.frames_redecoded += item["redecoded"]
            yield item
