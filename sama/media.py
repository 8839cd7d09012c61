"""Sample media for tests, fixtures and the demo: tiny videos with known shot cuts, and bad files.

Every test of the data engine needs inputs whose truth is known: where the cuts are, which file
is broken and how. This module makes them in a few seconds on a CPU: each shot has its own
strongly different base colour (hue and brightness both jump at a cut) and a small textured
square that drifts within the shot, so frames inside a shot differ a little while a content
detector sees exactly the cuts.

Legend: ``frames_THWC`` = time x height x width x 3, uint8 RGB.
"""

from __future__ import annotations

import colorsys
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sama.rng import numpy_generator

Size = tuple[int, int]  # (W, H)

# AV1 encoders in order of preference; PyAV 18 wheels ship libsvtav1 (and libdav1d to decode).
AV1_ENCODERS = ("libaom-av1", "libsvtav1", "librav1e")
_AV1_ALIASES = {"av1", *AV1_ENCODERS}
_GOLDEN = 0.38196601125  # hue step between shots: adjacent hues always far apart


def pick_encoder(codec: str) -> str:
    """The encoder PyAV has for ``codec``; any AV1 name maps to the AV1 encoder available."""
    import av

    candidates = AV1_ENCODERS if codec in _AV1_ALIASES else (codec,)
    for name in candidates:
        if name in av.codecs_available:
            try:
                av.codec.Codec(name, "w")
                return name
            except (av.error.FFmpegError, ValueError):
                continue
    raise ValueError(f"no encoder for {codec!r} in this PyAV build (tried {', '.join(candidates)})")


def write_video(
    path: str | os.PathLike,
    frames_THWC: np.ndarray,
    fps: int = 24,
    codec: str = "libx264",
    pix_fmt: str = "yuv420p",
    *,
    gop: int | None = None,
    rotation: int = 0,
    options: dict[str, str] | None = None,
    container_options: dict[str, str] | None = None,
) -> Path:
    """Encode RGB ``frames_THWC`` to ``path`` (container from the extension) and return it.

    ``codec="av1"`` (or ``"libaom-av1"``) uses whichever AV1 encoder is installed. ``gop`` sets
    the keyframe interval (seek tests need more than one GOP). ``rotation`` (degrees
    counter-clockwise) is stored as a display matrix, as phones do: players, ``probe_video`` and
    ``iter_frames`` show ``np.rot90(frame, rotation // 90)``. ``container_options`` go to the
    muxer, e.g. ``{"movflags": "faststart"}``.
    """
    import av

    frames_THWC = np.asarray(frames_THWC, dtype=np.uint8)
    if frames_THWC.ndim != 4 or frames_THWC.shape[-1] != 3 or len(frames_THWC) == 0:
        raise ValueError(f"expected non-empty T x H x W x 3 frames; got {frames_THWC.shape}")
    _, h, w, _ = frames_THWC.shape
    if pix_fmt == "yuv420p" and (w % 2 or h % 2):
        raise ValueError(f"yuv420p needs even width and height; got {w}x{h}")
    encoder = pick_encoder(codec)
    if encoder == "libsvtav1":
        os.environ.setdefault("SVT_LOG", "1")  # SVT-AV1 prints a banner per stream otherwise
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), mode="w", options=container_options or {}) as container:
        stream = container.add_stream(encoder, rate=fps)
        stream.width, stream.height, stream.pix_fmt = w, h, pix_fmt
        if gop:
            stream.codec_context.gop_size = int(gop)
        if rotation % 360:
            stream.set_display_rotation(rotation)
        if options:
            stream.options = dict(options)
        for frame_HWC in frames_THWC:
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame_HWC), format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


def _shot_colour(shot: int, seed: int) -> np.ndarray:
    """Base RGB of a shot: golden-ratio hue steps, alternating bright/dark, fully saturated."""
    hue = (seed * 0.1234567 + shot * _GOLDEN) % 1.0
    value = 0.92 if shot % 2 == 0 else 0.5
    return np.array(colorsys.hsv_to_rgb(hue, 0.85, value)) * 255


def _bounce(p: int, hi: int) -> int:
    """Position ``p`` reflected into ``[0, hi]``: the square bounces off the edges, never stops."""
    if hi <= 0:
        return 0
    p = int(p) % (2 * hi)
    return p if p <= hi else 2 * hi - p


def make_shot_frames(
    shot_lengths: Sequence[int], size: Size = (96, 64), seed: int = 0
) -> tuple[np.ndarray, list[int]]:
    """``(frames_THWC, cut_frames)`` for shots of the given lengths.

    ``cut_frames`` are the first frame of every shot after the first. Within a shot a
    checkerboard square (a quarter of the short side, contrasting colour) drifts ~1 px/frame,
    bouncing off the edges.
    """
    if not shot_lengths or min(shot_lengths) < 1:
        raise ValueError(f"shot lengths must be >= 1; got {list(shot_lengths)}")
    w, h = size
    side = max(4, min(w, h) // 4)
    yy, xx = np.mgrid[0:side, 0:side]
    checker = ((yy // 2 + xx // 2) % 2).astype(bool)
    frames, cuts, t = [], [], 0
    for s, length in enumerate(shot_lengths):
        rng = numpy_generator(seed, "shot", s)
        base = _shot_colour(s, seed)
        ink = 255 - base
        x0, y0 = rng.integers(0, w - side + 1), rng.integers(0, h - side + 1)
        dx, dy = rng.choice([-1, 1]), rng.choice([-1, 1])
        noise = rng.integers(-6, 7, size=(h, w, 1))  # a fixed texture, so the shot is not flat
        background = np.clip(base + noise, 0, 255).astype(np.uint8)
        if s:
            cuts.append(t)
        for i in range(length):
            frame = background.copy()
            x = _bounce(x0 + dx * i, w - side)
            y = _bounce(y0 + dy * (i // 2), h - side)
            patch = frame[y : y + side, x : x + side]
            patch[checker] = ink.astype(np.uint8)
            frames.append(frame)
        t += length
    return np.stack(frames), cuts


def write_shot_video(
    path: str | os.PathLike,
    shot_lengths: Sequence[int],
    size: Size = (96, 64),
    fps: int = 24,
    codec: str = "libx264",
    seed: int = 0,
    **write_kwargs: Any,
) -> list[int]:
    """Write a multi-shot video; returns the cut frame indices (first frame of each new shot)."""
    frames_THWC, cuts = make_shot_frames(shot_lengths, size=size, seed=seed)
    write_video(path, frames_THWC, fps=fps, codec=codec, **write_kwargs)
    return cuts


def write_image(path: str | os.PathLike, rgb: np.ndarray) -> Path:
    """Write an RGB uint8 ``H x W x 3`` image (format from the extension)."""
    from PIL import Image

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(rgb, dtype=np.uint8), mode="RGB").save(path)
    return path


def video_record(
    path: Path, shot_lengths: Sequence[int], size: Size, fps: int, codec: str, seed: int
) -> dict:
    """Write one shot video and describe it (the shape ``make_sample_set`` and fixtures share)."""
    cuts = write_shot_video(path, shot_lengths, size=size, fps=fps, codec=codec, seed=seed, gop=fps)
    return {
        "path": str(path),
        "size": list(size),
        "fps": fps,
        "codec": codec,
        "shot_lengths": list(shot_lengths),
        "num_frames": int(sum(shot_lengths)),
        "cuts": cuts,
    }


def _truncate_copy(src: Path, dst: Path, keep: float) -> Path:
    data = src.read_bytes()
    dst.write_bytes(data[: int(len(data) * keep)])
    return dst


def _write_bad_files(root: Path, good: Path, size: Size) -> dict[str, dict[str, str]]:
    """Inputs that must each become an error row of a known kind."""
    from sama.errors import ErrorKind

    bad = root / "bad"
    bad.mkdir(parents=True, exist_ok=True)
    (bad / "zero_byte.mp4").write_bytes(b"")
    (bad / "not_a_video.mp4").write_text("this is a text file with an .mp4 name\n" * 20)
    # moov at the end (the muxer default): cut in half, the index is gone -> cannot even open.
    _truncate_copy(good, bad / "truncated.mp4", 0.5)
    # moov at the front: opens and decodes its first frames, only the tail is missing.
    full = write_video(
        bad / "_faststart_full.mp4",
        make_shot_frames([40, 40], size=size, seed=7)[0],
        gop=12,
        container_options={"movflags": "faststart"},
    )
    _truncate_copy(full, bad / "truncated_faststart.mp4", 0.6)
    full.unlink()
    kinds = {
        "zero_byte": (bad / "zero_byte.mp4", ErrorKind.ZERO_BYTE),
        "not_a_video": (bad / "not_a_video.mp4", ErrorKind.NOT_A_VIDEO),
        "truncated": (bad / "truncated.mp4", ErrorKind.TRUNCATED),
        "truncated_faststart": (bad / "truncated_faststart.mp4", ErrorKind.TRUNCATED),
        "missing": (bad / "missing.mp4", ErrorKind.NOT_FOUND),
    }
    return {name: {"path": str(p), "kind": kind.value} for name, (p, kind) in kinds.items()}


def make_sample_set(out_dir: str | os.PathLike, size: Size = (96, 64), fps: int = 24) -> dict:
    """Write a small demo corpus to ``out_dir`` and return what was written, with the truth.

    - ``videos``: landscape (H.264), portrait (H.264), square (MPEG-4 Part 2) and an AV1 ``.mkv``
      (no stored frame count), 2-3 shots each, every shot >= 20 frames (room for a 17-frame clip,
      most for 33); each record has ``path, size, fps, codec, shot_lengths, num_frames, cuts``.
    - ``images``: a PNG and a JPEG.
    - ``bad``: zero-byte, text-named-.mp4, two truncated mp4s and a missing path, each with the
      ``ErrorKind`` value it must produce.
    - ``manifest``: ``manifest.jsonl`` with ``id, video, caption`` (absolute paths) for every
      video, bad ones included, so a build over it accounts for every kind of input.
    """
    root = Path(out_dir).resolve()
    (root / "videos").mkdir(parents=True, exist_ok=True)
    w, h = size
    side = (w + h) // 4 * 2  # even, between the two
    specs = {
        "landscape": ((w, h), [40, 36, 34], "libx264", "videos/landscape.mp4"),
        "portrait": ((h, w), [34, 20, 40], "libx264", "videos/portrait.mp4"),
        "square": ((side, side), [50, 33], "mpeg4", "videos/square.mp4"),
        "av1": ((w, h), [36, 30], "av1", "videos/av1.mkv"),
    }
    videos = {
        name: video_record(root / rel, shots, sz, fps, codec, seed)
        for seed, (name, (sz, shots, codec, rel)) in enumerate(specs.items())
    }
    images = {}
    for seed, (name, sz, ext) in enumerate(
        [("landscape", (w, h), "png"), ("portrait", (h, w), "jpg")]
    ):
        path = write_image(
            root / "images" / f"{name}.{ext}", make_shot_frames([1], sz, seed=10 + seed)[0][0]
        )
        images[name] = {"path": str(path), "size": list(sz)}
    bad = _write_bad_files(root, Path(videos["landscape"]["path"]), size)
    rows = [
        {
            "id": name,
            "video": v["path"],
            "caption": f"a checkered square drifts over a coloured background, {len(v['shot_lengths'])} shots",
        }
        for name, v in videos.items()
    ] + [
        {"id": f"bad_{name}", "video": b["path"], "caption": f"a broken input ({b['kind']})"}
        for name, b in bad.items()
    ]
    manifest = root / "manifest.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = {
        "root": str(root),
        "manifest": str(manifest),
        "videos": videos,
        "images": images,
        "bad": bad,
    }
    (root / "truth.json").write_text(json.dumps(out, indent=2))
    return out
