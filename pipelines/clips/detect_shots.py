"""DetectShots: cut each video into shots with PySceneDetect (``sama.video.shots``).

IN: ``source_uri``. OUT: ``shot_starts``, ``shot_ends`` (the shots tile every decoded frame)
and ``shot_detector`` (preset and thresholds, clips/v1). Fan-out 1:1 (the shot list stays one
row: the clip maker streams each video once over all its shots). Resources: 1 CPU task.

Decoding goes through PyAV, so AV1 and other codecs OpenCV reads as 0 frames work.
"""

from __future__ import annotations

from pipelines.clips.probe_videos import input_fs
from pipelines.engine.stage import Batch, Row, Stage, clip_columns


class DetectShots(Stage):
    name = "detect_shots"
    engine_key = "shots"
    inputs = clip_columns("source_uri")
    outputs = ("shot_starts", "shot_ends", *clip_columns("shot_detector"))

    @classmethod
    def enabled(cls, cfg) -> bool:
        return not cfg.single_pass()  # else CutClips detects shots in its own decode

    def process(self, batch: Batch) -> Batch:
        return self.map_rows(batch, self._detect)

    def _detect(self, row: Row) -> Row:
        from sama.video.shots import detect_shots

        uri = row["source_uri"]
        shots = detect_shots(uri, self.cfg.shots, fs=input_fs(uri, self.cfg.input.storage_options))
        return {
            "shot_starts": [s.start_frame for s in shots],
            "shot_ends": [s.end_frame for s in shots],
            "shot_detector": self.cfg.shots.describe(),
        }
