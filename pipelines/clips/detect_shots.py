"""DetectShots: cut each video into shots (``sama.video.shots``), first pass of two.

IN: ``source_uri``, ``video_salvage``. OUT: ``shot_starts``, ``shot_ends`` (transition and
damaged frames lie between shots), ``shot_detector`` (detector and thresholds) and
``video_salvage`` (the probe's note and what the decode skipped). Fan-out 1:1 (the shot list stays one row: the clip maker streams each
video once over all its shots). Resources: 1 CPU task (``engine.shots``), the detection in the
decode sandbox (``sama.video.cutting.detect_job``).
"""

from __future__ import annotations

from pipelines.clips.columns import CLIP_COLUMNS, clip_columns
from pipelines.engine.stage import Row, Rows, Stage
from sama.sandbox import run_job


class DetectShots(Stage):
    name = "detect_shots"
    engine_key = "shots"
    registry = CLIP_COLUMNS
    inputs = (*clip_columns("source_uri"), "video_salvage")
    outputs = ("shot_starts", "shot_ends", *clip_columns("shot_detector"), "video_salvage")

    @classmethod
    def enabled(cls, cfg) -> bool:
        return not cfg.single_pass()  # else CutClips detects shots in its own decode

    def process(self, rows: Rows) -> Rows:
        return self.map_rows(rows, self._detect)

    def _detect(self, row: Row) -> Row:
        uri = row["source_uri"]
        kwargs = dict(uri=uri, storage_options=self.cfg.input.storage_options, shots=self.cfg.shots)
        (shots,) = run_job("sama.video.cut_jobs:detect_job", kwargs, self.cfg.budget.for_uri(uri),
                           self.name)  # fmt: skip
        note = "; ".join(n for n in (row["video_salvage"], shots["salvage"]) if n)
        return {"shot_starts": shots["starts"], "shot_ends": shots["ends"],
                "shot_detector": self.cfg.shots.describe(), "video_salvage": note}  # fmt: skip
