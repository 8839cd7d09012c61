"""The ``preview`` column's value: a small JPEG of a row's anchor frame, as an HF ``Image``.

``datasets.Image`` stores an image as the struct ``{bytes, path}``; with ``path`` null the
bytes are the image. A 256 px JPEG at quality 85 is ~10-20 kB per row (a 480p 81-frame row
holds ~4 MB of latents), so the preview costs well under 1% of a shard and lets the Hub viewer
and ``datasets.load_dataset`` show what a row is. Pillow is imported inside the functions
(``sama[video]``), so ``datasets_spec`` stays light.

Legend: H height, W width, C colour channels (1, 3 or 4; RGB(A) order).
"""

from __future__ import annotations

import io

import numpy as np

PREVIEW_MAX_SIDE = 256
PREVIEW_QUALITY = 85


def _pil():
    try:
        from PIL import Image
    except ImportError as e:  # pragma: no cover - the video extra carries Pillow
        raise ImportError("previews need Pillow: pip install 'sama[video]'") from e
    return Image


def encode_preview(
    frame_HWC: np.ndarray, max_side: int = PREVIEW_MAX_SIDE, quality: int = PREVIEW_QUALITY
) -> dict:
    """``{"bytes": JPEG, "path": None}`` of an RGB frame (``uint8`` [H, W, 3], [H, W, 4] or
    gray [H, W]), shrunk so its long side is at most ``max_side`` (never enlarged)."""
    Image = _pil()
    arr = np.asarray(frame_HWC)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (3, 4)):
        raise ValueError(f"a preview frame is [H, W], [H, W, 3] or [H, W, 4], got {arr.shape}")
    if arr.shape[0] < 1 or arr.shape[1] < 1:
        raise ValueError(f"a preview frame needs at least one pixel, got {arr.shape}")
    if arr.dtype != np.uint8:
        raise ValueError(f"a preview frame is uint8 (0-255), got {arr.dtype}")
    if not 1 <= quality <= 95 or max_side < 1:
        raise ValueError(f"quality must be in [1, 95] and max_side >= 1, got {quality}, {max_side}")
    img = Image.fromarray(np.ascontiguousarray(arr)).convert("RGB")
    h, w = arr.shape[:2]
    scale = min(1.0, max_side / max(h, w))
    if scale < 1.0:
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        img = img.resize(size, Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=quality, optimize=True)
    return {"bytes": buf.getvalue(), "path": None}


def decode_preview(value: dict | None) -> np.ndarray | None:
    """The ``uint8`` [H, W, 3] picture of a ``preview`` value (None for a null preview)."""
    if not value or not value.get("bytes"):
        return None
    Image = _pil()
    with Image.open(io.BytesIO(value["bytes"])) as img:
        return np.asarray(img.convert("RGB"))
