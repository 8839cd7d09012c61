"""The frames of an aligned edit pair: the same frames of source and target, in one bucket.

SAMA puts source and target latents side by side on the same 3-D position grid (SAMA.md §1), so
both sides must be exactly the same frames: ``plan.num_frames`` frames from ``plan.start_frame``
(OpenVE-3M drops the first 4 of both, SAMA.md §4), cover-resized and centre-cropped to
``plan.bucket``. An image is a 1-frame video. A video that ends before the planned frames
(a truncated file the probe did not catch) is a ``truncated`` ``SampleError``.

Legend: ``frames_THWC`` = time x height x width x 3, uint8 RGB.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from sama.errors import ErrorKind, SampleError
from sama.pairs.align import PairPlan, read_image
from sama.video.buckets import resize_crop
from sama.video.probe import VideoInfo

STAGE = "load_pair_frames"


def load_side(
    uri: str, plan: PairPlan, info: VideoInfo | None = None, fs: Any = None
) -> np.ndarray:
    """``frames_THWC`` of one side of the pair (T = ``plan.num_frames``, bucket size).

    ``info`` (the probe of a video) saves a second probe; ``fs`` is an fsspec filesystem when
    ``uri`` needs storage options."""
    w, h = plan.bucket
    if plan.media_type == "image":
        return resize_crop(read_image(uri, fs), (w, h))[None]
    from sama.video.decode import iter_frames

    out_THWC = np.empty((plan.num_frames, h, w, 3), dtype=np.uint8)
    got = 0
    for frame_HWC in iter_frames(
        uri, start=plan.start_frame, count=plan.num_frames, info=info, fs=fs
    ):
        out_THWC[got] = resize_crop(frame_HWC, (w, h))
        got += 1
    if got < plan.num_frames:
        raise SampleError(
            ErrorKind.TRUNCATED,
            f"{uri} ended after {got} of the {plan.num_frames} frames from frame "
            f"{plan.start_frame}",
            stage=STAGE,
        )
    return out_THWC


def load_pair_frames(
    source_uri: str,
    target_uri: str,
    plan: PairPlan,
    infos: tuple[VideoInfo | None, VideoInfo | None] = (None, None),
    fs: Any = None,
) -> tuple[np.ndarray, np.ndarray]:
    """``(source frames_THWC, target frames_THWC)``: same shape, same frame indices."""
    source = load_side(source_uri, plan, infos[0], fs)
    target = load_side(target_uri, plan, infos[1], fs)
    return source, target


def pair_frames_job(ctx: Any, source_uri: str, target_uri: str, plan: PairPlan,
                    infos: tuple[dict | None, dict | None], storage_options: dict) -> Iterator[dict]:  # fmt: skip
    """Both sides' frames in shared memory (``sama.sandbox`` job for the pair frame loader)."""
    from sama.video.probe import input_fs

    w, h = plan.bucket
    out = {}
    for side, uri, info in (("source", source_uri, infos[0]), ("target", target_uri, infos[1])):
        frames_THWC = load_side(uri, plan, VideoInfo(**info) if info else None,
                                input_fs(uri, storage_options))  # fmt: skip
        out[side] = ctx.alloc((plan.num_frames, h, w, 3))
        out[side][:] = frames_THWC
        ctx.check()
    yield out
