"""Aspect-ratio buckets and the cover-resize + centre-crop that puts a clip into one.

SAMA trains at 480p on 15 aspect buckets (SAMA.md section 1): a clip goes to the bucket nearest
its aspect ratio, is resized so that it covers the bucket, then centre-cropped. Smaller
resolutions (tests, the demo) scale the same table and round each side to a multiple of 16
(Wan2.1: 8x VAE downsampling times the 2x2 patch).

Legend: ``frames_THWC`` = time x height x width x channels (uint8 RGB).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

Size = tuple[int, int]  # (W, H)

# SAMA.md section 1, W x H at 480p, in the paper's order.
BUCKETS_480P: tuple[Size, ...] = (
    (896, 448),
    (832, 480),
    (768, 512),
    (736, 544),
    (704, 576),
    (672, 608),
    (640, 640),
    (608, 672),
    (576, 704),
    (544, 736),
    (512, 768),
    (512, 800),
    (480, 832),
    (448, 864),
    (448, 896),
)


def _round_to(x: float, multiple: int) -> int:
    """Round half up to a multiple of ``multiple``, never below ``multiple``."""
    return max(multiple, int(math.floor(x / multiple + 0.5)) * multiple)


def buckets_for(resolution: int = 480, multiple: int = 16) -> tuple[Size, ...]:
    """The 480p bucket table scaled by ``resolution / 480``, sides rounded to ``multiple``.

    Duplicates that rounding creates at small resolutions are dropped, keeping the first
    occurrence, so the order stays the paper's. ``buckets_for(480)`` is exactly ``BUCKETS_480P``.
    """
    if resolution <= 0 or multiple <= 0:
        raise ValueError(f"resolution and multiple must be positive; got {resolution}, {multiple}")
    scale = resolution / 480
    out: list[Size] = []
    for w, h in BUCKETS_480P:
        b = (_round_to(w * scale, multiple), _round_to(h * scale, multiple))
        if b not in out:
            out.append(b)
    return tuple(out)


def nearest_bucket(width: int, height: int, buckets: Sequence[Size] = BUCKETS_480P) -> Size:
    """The bucket whose aspect ratio is nearest to ``width / height`` in log space.

    Ties go to the bucket listed first.
    """
    if width <= 0 or height <= 0:
        raise ValueError(f"width and height must be positive; got {width}x{height}")
    if not buckets:
        raise ValueError("no buckets to choose from")
    target = math.log(width / height)
    return min(buckets, key=lambda b: abs(math.log(b[0] / b[1]) - target))


@dataclass(frozen=True)
class ResizeCropPlan:
    """Cover-resize ``src`` to ``resized`` (scale ``scale``), then crop ``box`` = (x0, y0, x1, y1)."""

    scale: float
    resized: Size
    box: tuple[int, int, int, int]


def resize_crop_plan(src_w: int, src_h: int, dst_w: int, dst_h: int) -> ResizeCropPlan:
    """The smallest uniform scale that covers ``dst`` and the centred crop box inside it."""
    if min(src_w, src_h, dst_w, dst_h) <= 0:
        raise ValueError(f"sizes must be positive; got {src_w}x{src_h} -> {dst_w}x{dst_h}")
    scale = max(dst_w / src_w, dst_h / src_h)
    rw = max(dst_w, round(src_w * scale))
    rh = max(dst_h, round(src_h * scale))
    x0 = (rw - dst_w) // 2
    y0 = (rh - dst_h) // 2
    return ResizeCropPlan(scale=scale, resized=(rw, rh), box=(x0, y0, x0 + dst_w, y0 + dst_h))


def resize_crop(frames_THWC: np.ndarray, size: Size) -> np.ndarray:
    """Cover-resize then centre-crop every frame to ``size`` = (W, H).

    Takes ``T x H x W x C`` (or a single ``H x W x C`` image) uint8 and returns the same rank.
    Downscaling uses ``INTER_AREA`` (no aliasing), upscaling ``INTER_LINEAR``.
    """
    import cv2

    frames = np.asarray(frames_THWC)
    single = frames.ndim == 3
    if single:
        frames = frames[None]
    if frames.ndim != 4:
        raise ValueError(f"expected T x H x W x C frames; got shape {frames.shape}")
    _, src_h, src_w, _ = frames.shape
    dst_w, dst_h = size
    plan = resize_crop_plan(src_w, src_h, dst_w, dst_h)
    x0, y0, x1, y1 = plan.box
    if plan.resized == (src_w, src_h):
        out = frames[:, y0:y1, x0:x1]
    else:
        interp = cv2.INTER_AREA if plan.scale < 1 else cv2.INTER_LINEAR
        resized = [cv2.resize(f, plan.resized, interpolation=interp) for f in frames]
        # cv2 drops a single channel axis; put it back so the rank is preserved.
        out = np.stack([r.reshape(r.shape[0], r.shape[1], -1)[y0:y1, x0:x1] for r in resized])
    out = np.ascontiguousarray(out)
    return out[0] if single else out
