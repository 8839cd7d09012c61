"""Damaged copies of real footage, the way files arrive broken: cut off, overwritten, or valid
but odd (a phone's rotated video whose index runs a little past its last frame).

They reproduce the awkward inputs that gave no clip before salvage: opencv-doc's ``box.mp4``
(a faststart H.264 mp4, 456 frames, one keyframe at 250) cut at 58% decodes 8.5 s of 15.2 s;
with 20 kB of noise written at 50% it failed after 224 good frames; and a phone video whose
track promises 0.07 s more than its frames was flagged truncated.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np


def truncate(src: str | os.PathLike, dst: str | os.PathLike, keep: float) -> Path:
    """``dst`` = the first ``keep`` (0-1) of ``src``'s bytes: a download cut short."""
    data = Path(src).read_bytes()
    out = Path(dst)
    out.write_bytes(data[: int(len(data) * keep)])
    return out


def overwrite(
    src: str | os.PathLike, dst: str | os.PathLike, at: float, nbytes: int, seed: int = 0
) -> Path:
    """``dst`` = ``src`` with ``nbytes`` random bytes written over it from ``at`` (0-1) of its
    length: a bad sector, a broken transfer. The container index still points into them."""
    data = bytearray(Path(src).read_bytes())
    start = int(len(data) * at)
    noise = np.random.default_rng(seed).integers(0, 256, nbytes, dtype=np.uint8).tobytes()
    data[start : start + nbytes] = noise[: max(0, min(nbytes, len(data) - start))]
    out = Path(dst)
    out.write_bytes(bytes(data))
    return out


def write_phone_video(
    dst: str | os.PathLike,
    frames_THWC: np.ndarray,
    fps: int = 30,
    rotation: int = 90,
    extra_s: float = 0.07,
) -> Path:
    """An H.264 mp4 like a phone's: a display matrix rotating by ``rotation`` degrees, and a
    last sample that lasts ``extra_s`` longer than a frame, so the track's duration promises
    ``extra_s`` more than the frames hold."""
    import av

    frames_THWC = np.asarray(frames_THWC, dtype=np.uint8)
    _, h, w, _ = frames_THWC.shape
    out = Path(dst)
    with av.open(str(out), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.options = {"bf": "0"}  # no reordering: the last packet is the last frame
        if rotation % 360:
            stream.set_display_rotation(rotation)
        packets = [p for f in frames_THWC for p in stream.encode(_frame(f))]
        packets += list(stream.encode(None))
        for p in packets[:-1]:
            container.mux(p)
        last = packets[-1]
        last.duration = int(round((1 / fps + extra_s) / last.time_base))
        container.mux(last)
    return out


def _frame(frame_HWC: np.ndarray):
    import av

    return av.VideoFrame.from_ndarray(np.ascontiguousarray(frame_HWC), format="rgb24")
