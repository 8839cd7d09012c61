"""ProbeVideos: size, fps, frame count, codec, rotation of each input; bad files become errors.

IN: ``source_uri``. OUT: ``fps``, ``orig_width``, ``orig_height`` (clips/v1) and the ``video_*``
columns the decoders reuse (no second probe). Fan-out 1:1. Resources: 1 CPU task per video.

A video with fewer frames than the shortest clip is a ``too_short`` error here, before the
shot detector decodes it. Reads through fsspec (``sama.video.probe``).
"""

from __future__ import annotations

from typing import Any

from pipelines.engine.stage import Batch, Row, Stage, clip_columns
from sama.errors import ErrorKind, SampleError


def input_fs(uri: str, storage_options: dict) -> Any:
    """The fsspec filesystem for ``uri`` when storage options are set, else None (default)."""
    if not storage_options:
        return None
    import fsspec

    return fsspec.core.url_to_fs(uri, **storage_options)[0]


class ProbeVideos(Stage):
    name = "probe"
    engine_key = "probe"
    inputs = clip_columns("source_uri")
    outputs = (
        *clip_columns("fps", "orig_width", "orig_height"),
        "video_num_frames",
        "video_duration_s",
        "video_codec",
        "video_rotation",
        "video_size_bytes",
        "video_backend",
    )

    def process(self, batch: Batch) -> Batch:
        return self.map_rows(batch, self._probe)

    def _probe(self, row: Row) -> Row:
        from sama.video.probe import probe_video

        uri = row["source_uri"]
        info = probe_video(uri, fs=input_fs(uri, self.cfg.input.storage_options))
        need = self.cfg.clips.shortest_clip
        if info.num_frames < need:
            raise SampleError(
                ErrorKind.TOO_SHORT,
                f"{info.num_frames} frames, a clip needs at least {need}",
                stage=self.name,
            )
        if info.fps <= 0:
            raise SampleError(ErrorKind.NOT_A_VIDEO, "no frame rate", stage=self.name)
        return {
            "fps": info.fps,
            "orig_width": info.width,
            "orig_height": info.height,
            "video_num_frames": info.num_frames,
            "video_duration_s": info.duration_s,
            "video_codec": info.codec,
            "video_rotation": info.rotation,
            "video_size_bytes": info.size_bytes,
            "video_backend": info.backend,
        }


def video_info(row: Row) -> Any:
    """The ``VideoInfo`` a probed row describes (saves the decoders a second probe)."""
    from sama.video.probe import VideoInfo

    return VideoInfo(
        uri=row["source_uri"],
        width=row["orig_width"],
        height=row["orig_height"],
        fps=row["fps"],
        num_frames=row["video_num_frames"],
        duration_s=row["video_duration_s"],
        codec=row["video_codec"],
        rotation=row["video_rotation"],
        size_bytes=row["video_size_bytes"],
        backend=row["video_backend"],
    )
