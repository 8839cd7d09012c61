"""ProbeVideos: size, fps, frame count, codec, rotation of each input; bad files become errors.

IN: ``source_uri``. OUT: ``fps``, ``orig_width``, ``orig_height`` (clips/v1) and the ``video_*``
columns the decoders reuse (no second probe). Fan-out 1:1. Resources: 1 CPU task per video.

The probe (``sama.video.cut_jobs.probe_job``) runs in the decode sandbox (``sama.sandbox``): a
read that stalls is a ``timeout`` row, a video over ``budget.max_pixels`` / ``max_frames`` a
``too_large`` row, a video with fewer frames than the shortest clip a ``too_short`` row, all
before the shot detector decodes anything. A file whose end is cut off but whose frames still
decode is not an error: ``video_salvage`` says what is missing, and the cutter uses the rest.
"""

from __future__ import annotations

from pipelines.clips.columns import CLIP_COLUMNS, clip_columns
from pipelines.engine.stage import Row, Rows, Stage
from sama.sandbox import run_job

PROBE_EXTRAS = ("video_num_frames", "video_duration_s", "video_codec", "video_rotation",
                "video_size_bytes", "video_backend", "video_salvage")  # fmt: skip


class ProbeVideos(Stage):
    name = "probe"
    engine_key = "probe"
    registry = CLIP_COLUMNS
    inputs = clip_columns("source_uri")
    outputs = (*clip_columns("fps", "orig_width", "orig_height"), *PROBE_EXTRAS)

    def process(self, rows: Rows) -> Rows:
        return self.map_rows(rows, self._probe)

    def _probe(self, row: Row) -> Row:
        uri, b = row["source_uri"], self.cfg.budget
        kwargs = dict(uri=uri, storage_options=self.cfg.input.storage_options,
                      shortest_clip=self.cfg.clips.shortest_clip, max_pixels=b.max_pixels,
                      max_frames=b.max_frames, stage=self.name)  # fmt: skip
        (info,) = run_job("sama.video.cut_jobs:probe_job", kwargs, b.for_uri(uri), self.name)
        return {
            "fps": info["fps"],
            "orig_width": info["width"],
            "orig_height": info["height"],
            "video_num_frames": info["num_frames"],
            "video_duration_s": info["duration_s"],
            "video_codec": info["codec"],
            "video_rotation": info["rotation"],
            "video_size_bytes": info["size_bytes"],
            "video_backend": info["backend"],
            "video_salvage": info.get("salvage") or "",
        }


def video_info(row: Row) -> dict:
    """The ``VideoInfo`` fields a probed row carries (saves the decoders a second probe)."""
    return {
        "uri": row["source_uri"], "width": row["orig_width"], "height": row["orig_height"],
        "fps": row["fps"], "num_frames": row["video_num_frames"],
        "duration_s": row["video_duration_s"], "codec": row["video_codec"],
        "rotation": row["video_rotation"], "size_bytes": row["video_size_bytes"],
        "backend": row["video_backend"], "salvage": row.get("video_salvage") or "",
    }  # fmt: skip
