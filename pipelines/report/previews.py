"""Small pictures for the report: latent previews, source-video frames, optional VAE decodes.

Latents can't be looked at without the VAE, so the cheap preview maps latent channels 0-2 of one
latent frame to RGB (each stretched between its 1st and 99th percentile) and upscales it by
nearest neighbour: enough to see layout, motion between frames and obviously broken latents.
With ``--vae`` the Wan VAE decodes the latent frame to pixels. Frames of the source videos are
read with PyAV when the URI is readable. PNGs are encoded here (zlib), no imaging dependency.

Legend: C latent channels, T latent frames, H, W height/width.
"""

from __future__ import annotations

import base64
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

PREVIEW_MIN_SIDE = 128  # cheap previews are upscaled by an integer factor to at least this
THUMB_MAX_SIDE = 256


def encode_png(rgb_HW3: np.ndarray) -> bytes:
    """8-bit RGB PNG bytes of an ``(H, W, 3)`` uint8 array."""
    img = np.ascontiguousarray(rgb_HW3, dtype=np.uint8)
    h, w, _ = img.shape
    raw = b"".join(b"\x00" + img[y].tobytes() for y in range(h))  # filter type 0 per row

    def chunk(tag: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(tag + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw, 6))
        + chunk(b"IEND", b"")
    )


def png_data_uri(rgb_HW3: np.ndarray) -> str:
    return "data:image/png;base64," + base64.b64encode(encode_png(rgb_HW3)).decode("ascii")


def jpeg_data_uri(jpeg: bytes) -> str:
    return "data:image/jpeg;base64," + base64.b64encode(jpeg).decode("ascii")


def stored_preview_picture(row: dict) -> Picture | None:
    """The row's own ``preview`` (v2 specs: a JPEG of the anchor frame), shown as is; the only
    picture of the content when the source media is not at hand (a published dataset)."""
    value = row.get("preview")
    if not isinstance(value, dict) or not value.get("bytes"):
        return None
    return Picture("preview (stored)", jpeg_data_uri(value["bytes"]))


def upscale(rgb_HW3: np.ndarray, min_side: int = PREVIEW_MIN_SIDE) -> np.ndarray:
    """Nearest-neighbour upscale by the integer factor that brings the short side to ``min_side``."""
    k = max(1, -(-min_side // max(1, min(rgb_HW3.shape[:2]))))
    return np.repeat(np.repeat(rgb_HW3, k, axis=0), k, axis=1)


def latent_preview(latents_CTHW: np.ndarray, frame: int = 0) -> np.ndarray:
    """Channels 0-2 of latent frame ``frame`` as an upscaled RGB uint8 image."""
    c = min(3, latents_CTHW.shape[0])
    x_3HW = np.asarray(latents_CTHW[:c, frame], dtype=np.float32)
    if c < 3:
        x_3HW = np.concatenate([x_3HW, np.repeat(x_3HW[-1:], 3 - c, axis=0)])
    x_3HW = np.nan_to_num(x_3HW, nan=0.0, posinf=0.0, neginf=0.0)
    lo = np.percentile(x_3HW, 1, axis=(1, 2), keepdims=True)
    hi = np.percentile(x_3HW, 99, axis=(1, 2), keepdims=True)
    x_3HW = (x_3HW - lo) / np.maximum(hi - lo, 1e-6)
    rgb = (np.clip(x_3HW, 0, 1) * 255).round().astype(np.uint8).transpose(1, 2, 0)
    return upscale(rgb)


@dataclass
class Picture:
    """An image for the sample grid, or why there is none."""

    label: str
    data_uri: str | None = None
    note: str = ""


def read_frame(uri: str, frame_index: int, fps: float | None) -> np.ndarray:
    """Frame ``frame_index`` of a video (or the image) at ``uri`` as RGB uint8, downscaled to at
    most ``THUMB_MAX_SIDE``. Raises ``OSError``/``ValueError``/``ImportError`` if unreadable."""
    import av
    import fsspec

    with fsspec.open(uri, "rb") as f, av.open(f) as container:
        stream = container.streams.video[0]
        rate = float(stream.average_rate or fps or 0)
        tb = stream.time_base
        if frame_index == 0 or not rate or tb is None:  # images, first frames, unknown timing
            for i, frame in enumerate(container.decode(stream)):
                if i >= frame_index:
                    return _frame_rgb(frame)
            raise ValueError(f"{uri} has fewer than {frame_index + 1} frames")
        start = float(stream.start_time * tb) if stream.start_time is not None else 0.0
        target_s = start + frame_index / rate
        container.seek(int(target_s / tb), stream=stream, backward=True)  # nearest keyframe before
        for frame in container.decode(stream):
            if frame.pts is None or float(frame.pts * tb) >= target_s - 0.5 / rate:
                return _frame_rgb(frame)
    raise ValueError(f"{uri} has no frame {frame_index}")


def _frame_rgb(frame) -> np.ndarray:
    scale = min(1.0, THUMB_MAX_SIDE / max(frame.width, frame.height))
    w, h = max(2, round(frame.width * scale)), max(2, round(frame.height * scale))
    return frame.reformat(width=w, height=h, format="rgb24").to_ndarray()


def source_frame_picture(
    label: str, uri: str | None, frame_index: int, fps: float | None
) -> Picture:
    if not uri:
        return Picture(label, note="no URI")
    try:
        import av

        av_errors: tuple[type[BaseException], ...] = (av.error.FFmpegError,)
    except ImportError:
        return Picture(label, note="PyAV is not installed: pip install 'sama[video]'")
    try:
        return Picture(label, png_data_uri(read_frame(uri, frame_index, fps)))
    except (OSError, ValueError, *av_errors) as e:
        return Picture(label, note=f"unreadable: {type(e).__name__}")


class VaeDecoder:
    """Decodes latent frame 0 to pixels with ``sama.encoders.vae.WanVAE`` (``--vae MODEL_DIR``).

    ``MODEL_DIR`` is a diffusers Wan repo (with a ``vae/`` subfolder) or a VAE folder itself.
    The latents are stored normalised; ``WanVAE.decode`` undoes that with the VAE's own
    statistics. Only latent frame 0 is decoded: the causal VAE encodes pixel frame 0 alone.
    """

    def __init__(self, model_dir: str, device: str = "auto") -> None:
        try:
            from sama.encoders.config import VAEConfig
            from sama.encoders.vae import WanVAE

            path = Path(model_dir)
            sub = None if path.is_dir() and not (path / "vae").is_dir() else "vae"
            self.vae = WanVAE.load(VAEConfig(model_id=model_dir, subfolder=sub, device=device))
        except ImportError as e:
            raise ImportError(
                f"--vae needs torch and diffusers ({e}); install with: pip install 'sama[models]'"
            ) from e

    def decode_first_frame(self, latents_CTHW: np.ndarray) -> np.ndarray:
        import torch

        z_CTHW = torch.from_numpy(np.ascontiguousarray(latents_CTHW[:, :1], dtype=np.float32))
        frames_THWC = self.vae.decode(z_CTHW)
        return frames_THWC[0].numpy()
