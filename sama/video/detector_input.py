"""Small frames for shot detectors: the fast I420 downscale and the OpenCV comparison reader.

A shot detector needs a few thousand pixels per frame, not the full picture, and converting a
whole 720p frame to RGB costs more than decoding it. For 8-bit 4:2:0 frames the Y, U and V
planes are area-downscaled straight from the decoder's buffers and converted to BGR at the
small size (``i420_to_small_bgr``: ~0.1 ms per 640x360 frame to 64x36, ~0.3 ms to 256x144;
FFmpeg's swscale AREA took 0.13-0.2 ms and ``to_ndarray`` with a size 2.5 ms, since it builds a
scaler per frame). ``opencv_frames`` reads local files with OpenCV, for comparison only: it
returns 0 frames for AV1 without an error, which is raised here as ``unsupported_codec``.

Legend: ``frame_HWC`` one BGR uint8 frame.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from fractions import Fraction
from typing import Any

import numpy as np

from sama.errors import ErrorKind, SampleError


def small_size(w: int, h: int, width: int, side: int = 0) -> tuple[int, int]:
    """The size a ``w`` x ``h`` frame is downscaled to (never up): ``side`` > 0 makes the
    longest side ``side`` px, else the width ``width``; even, so 4:2:0 chroma halves exactly."""
    if side > 0:
        scale = side / max(w, h)
        if scale >= 1.0:
            return w, h
        return max(2, round(w * scale / 2) * 2), max(2, round(h * scale / 2) * 2)
    if w <= width:
        return w, h
    return width, max(2, round(h * width / w / 2) * 2)


def i420_to_small_bgr(frame: Any, width: int, height: int) -> np.ndarray:
    """Area-downscale the Y, U, V planes of a PyAV frame from the decoder's buffers, then
    YUV->BGR: ``frame_HWC`` of ``height`` x ``width`` (both even)."""
    import cv2

    i420 = np.empty((height * 3 // 2, width), np.uint8)
    targets = (
        i420[:height],
        i420[height:].reshape(-1)[: height * width // 4].reshape(height // 2, width // 2),
        i420[height:].reshape(-1)[height * width // 4 :].reshape(height // 2, width // 2),
    )
    for plane, target in zip(frame.planes, targets, strict=True):
        src = np.frombuffer(plane, np.uint8).reshape(-1, plane.line_size)
        src = src[: plane.height, : plane.width]
        cv2.resize(src, target.shape[::-1], dst=target, interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(i420, cv2.COLOR_YUV2BGR_I420)


def opencv_frames(
    uri: str, path: str, size: Callable[[int, int], tuple[int, int]] | None, stage: str
) -> tuple[Fraction, Iterator[tuple[int, np.ndarray]]]:
    """``(rate, (index, frame_HWC) stream)`` read by OpenCV from the local ``path``, each frame
    area-downscaled to ``size(w, h)`` when given."""
    import cv2

    cap = cv2.VideoCapture(path)
    if not cap.isOpened():
        raise SampleError(ErrorKind.NOT_A_VIDEO, f"{uri}: OpenCV cannot open it", stage=stage)
    fps = cap.get(cv2.CAP_PROP_FPS) or 0.0
    if fps <= 0:
        cap.release()
        raise SampleError(ErrorKind.NOT_A_VIDEO, f"{uri}: no frame rate", stage=stage)
    return Fraction(fps).limit_denominator(1001000), _opencv_iter(uri, cap, size, stage)


def _opencv_iter(
    uri: str, cap: Any, size: Callable[[int, int], tuple[int, int]] | None, stage: str
) -> Iterator[tuple[int, np.ndarray]]:
    import cv2

    n = 0
    try:
        while True:
            ok, frame_HWC = cap.read()
            if not ok:
                break
            h, w = frame_HWC.shape[:2]
            if size is not None and size(w, h) != (w, h):
                frame_HWC = cv2.resize(frame_HWC, size(w, h), interpolation=cv2.INTER_AREA)
            yield n, frame_HWC
            n += 1
    finally:
        cap.release()
    if n == 0:
        # OpenCV reads 0 frames from AV1 (and other codecs its FFmpeg lacks) without an error.
        raise SampleError(
            ErrorKind.UNSUPPORTED_CODEC,
            f"{uri}: OpenCV decoded 0 frames (AV1?); use shots.backend='pyav'",
            stage=stage,
        )
