"""A tiny generated edit-pair corpus with known truth, for tests and ``make demo`` (issue 6).

Every pair is a source and an edited copy whose instruction says what changed: a red square
drifting over a textured background is recoloured, removed, or joined by a green circle, in
videos (H.264 MP4) and images (PNG). Beside the good pairs sit deliberately broken ones, one per
failure the pair build must turn into an error row: a different frame count, aspect ratio or
frame rate, an image paired with a video, a missing target, a zero-byte source, a file that is
not an image, and a manifest row without instruction. ``truth.json`` records for every pair
either the plan alignment must produce or the error kind it must raise.

Legend: ``frames_THWC`` = time x height x width x 3, uint8 RGB.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from sama.errors import ErrorKind
from sama.media import write_image, write_video
from sama.rng import numpy_generator

Size = tuple[int, int]  # (W, H)

RED = (220, 30, 30)
BLUE = (30, 60, 220)
YELLOW = (230, 210, 40)
GREEN = (40, 200, 60)
NUM_FRAMES = 25  # a 4k+1 count: the whole video is used
SHORT_FRAMES = 17


def _background(size: Size, seed: int) -> np.ndarray:
    w, h = size
    rng = numpy_generator(seed, "pair-background")
    yy, xx = np.mgrid[0:h, 0:w]
    base = 90 + 60 * (xx / max(w - 1, 1))[..., None] + 30 * (yy / max(h - 1, 1))[..., None]
    noise = rng.integers(-8, 9, size=(h, w, 1))
    return np.clip(base + noise, 0, 255).astype(np.uint8).repeat(3, axis=2)


def scene_frames(
    num_frames: int,
    size: Size,
    seed: int = 0,
    square: tuple[int, int, int] | None = RED,
    circle: tuple[int, int, int] | None = None,
) -> np.ndarray:
    """``frames_THWC``: a ``square``-coloured square drifting 1 px/frame (None = no square),
    optionally a fixed ``circle`` in the top-left corner. Same seed = same background/path."""
    w, h = size
    side = max(6, min(w, h) // 4)
    bg = _background(size, seed)
    rng = numpy_generator(seed, "pair-square")
    x0, y0 = int(rng.integers(0, w - side)), int(rng.integers(0, h - side))
    yy, xx = np.mgrid[0:h, 0:w]
    r = side // 2
    disc = (xx - (r + 2)) ** 2 + (yy - (r + 2)) ** 2 <= r * r
    frames = []
    for t in range(num_frames):
        frame = bg.copy()
        if square is not None:
            x = (x0 + t) % (w - side)
            frame[y0 : y0 + side, x : x + side] = square
        if circle is not None:
            frame[disc] = circle
        frames.append(frame)
    return np.stack(frames)


def _pair(pid: str, src: str, tgt: str, instruction: str, **truth: Any) -> dict[str, Any]:
    return {"id": pid, "source": src, "target": tgt, "instruction": instruction, **truth}


def _expect(media: str, size: Size, num_frames: int = 1, fps: float | None = None) -> dict:
    from sama.video.buckets import nearest_bucket

    return {
        "expected": {
            "media_type": media,
            "num_frames": num_frames,
            "start_frame": 0,
            "fps": fps,
            "source_size": list(size),
            "bucket": list(nearest_bucket(*size)),
        }
    }


def _fail(kind: ErrorKind, stage: str) -> dict:
    return {"error": kind.value, "stage": stage}


def _write_videos(root: Path, size: Size, fps: int) -> None:
    w, h = size
    portrait = (h, w)
    videos = {
        "src_a": scene_frames(NUM_FRAMES, size, 1),
        "tgt_a_blue": scene_frames(NUM_FRAMES, size, 1, square=BLUE),
        "tgt_a_circle": scene_frames(NUM_FRAMES, size, 1, circle=GREEN),
        "tgt_a_removed": scene_frames(NUM_FRAMES, size, 1, square=None),
        "tgt_a_short": scene_frames(SHORT_FRAMES, size, 1, square=BLUE),
        "tgt_a_portrait": scene_frames(NUM_FRAMES, portrait, 1, square=BLUE),
        "src_p": scene_frames(NUM_FRAMES, portrait, 2),
        "tgt_p_yellow": scene_frames(NUM_FRAMES, portrait, 2, square=YELLOW),
    }
    for name, frames in videos.items():
        write_video(root / "videos" / f"{name}.mp4", frames, fps=fps, gop=fps)
    write_video(root / "videos" / "tgt_a_12fps.mp4", videos["tgt_a_blue"], fps=fps // 2)


def _write_images(root: Path, size: Size) -> None:
    w, h = size
    images = {
        "src_i": scene_frames(1, size, 3)[0],
        "tgt_i_blue": scene_frames(1, size, 3, square=BLUE)[0],
        "src_q": scene_frames(1, (h, w), 4)[0],
        "tgt_q_circle": scene_frames(1, (h, w), 4, circle=GREEN)[0],
    }
    for name, rgb in images.items():
        write_image(root / "images" / f"{name}.png", rgb)
    bad = root / "bad"
    bad.mkdir(parents=True, exist_ok=True)
    (bad / "zero_byte.mp4").write_bytes(b"")
    (bad / "not_an_image.png").write_text("this is text, not a PNG\n" * 10)


def _pairs(size: Size, fps: int) -> list[dict[str, Any]]:
    w, h = size
    v, i = "videos/", "images/"
    video = _expect("video", size, NUM_FRAMES, float(fps))
    return [
        _pair(
            "video_recolor",
            v + "src_a.mp4",
            v + "tgt_a_blue.mp4",
            "Change the red square to blue.",
            edit="recolor",
            **video,
        ),
        _pair(
            "video_add",
            v + "src_a.mp4",
            v + "tgt_a_circle.mp4",
            "Add a green circle in the top-left corner.",
            edit="add",
            **video,
        ),
        _pair(
            "video_remove",
            v + "src_a.mp4",
            v + "tgt_a_removed.mp4",
            "Remove the red square.",
            edit="remove",
            **video,
        ),
        _pair(
            "video_portrait_recolor",
            v + "src_p.mp4",
            v + "tgt_p_yellow.mp4",
            "Make the red square yellow.",
            edit="recolor",
            **_expect("video", (h, w), NUM_FRAMES, float(fps)),
        ),
        _pair(
            "image_recolor",
            i + "src_i.png",
            i + "tgt_i_blue.png",
            "Change the red square to blue.",
            edit="recolor",
            media_type="image",
            **_expect("image", size),
        ),
        _pair(
            "image_add_portrait",
            i + "src_q.png",
            i + "tgt_q_circle.png",
            "Add a green circle in the top-left corner.",
            edit="add",
            **_expect("image", (h, w)),
        ),
        _pair(
            "bad_frame_count",
            v + "src_a.mp4",
            v + "tgt_a_short.mp4",
            "Change the red square to blue.",
            **_fail(ErrorKind.MISMATCH, "align_pair"),
        ),
        _pair(
            "bad_aspect",
            v + "src_a.mp4",
            v + "tgt_a_portrait.mp4",
            "Change the red square to blue.",
            **_fail(ErrorKind.MISMATCH, "align_pair"),
        ),
        _pair(
            "bad_fps",
            v + "src_a.mp4",
            v + "tgt_a_12fps.mp4",
            "Change the red square to blue.",
            **_fail(ErrorKind.MISMATCH, "align_pair"),
        ),
        _pair(
            "bad_media",
            i + "src_i.png",
            v + "tgt_a_blue.mp4",
            "Change the red square to blue.",
            **_fail(ErrorKind.MISMATCH, "align_pair"),
        ),
        _pair(
            "bad_missing_target",
            v + "src_a.mp4",
            v + "missing.mp4",
            "Change the red square to blue.",
            **_fail(ErrorKind.NOT_FOUND, "probe"),
        ),
        _pair(
            "bad_zero_byte_source",
            "bad/zero_byte.mp4",
            v + "tgt_a_blue.mp4",
            "Change the red square to blue.",
            **_fail(ErrorKind.ZERO_BYTE, "probe"),
        ),
        _pair(
            "bad_not_an_image",
            "bad/not_an_image.png",
            i + "tgt_i_blue.png",
            "Change the red square to blue.",
            **_fail(ErrorKind.NOT_AN_IMAGE, "read_image"),
        ),
        _pair(
            "bad_no_instruction",
            v + "src_a.mp4",
            v + "tgt_a_blue.mp4",
            "",
            **_fail(ErrorKind.BAD_MANIFEST_ROW, "list_pairs"),
        ),
    ]


def make_pair_set(out_dir: str | os.PathLike, size: Size = (96, 64), fps: int = 24) -> dict:
    """Write the demo pair corpus to ``out_dir``; return (and write to ``truth.json``) its truth.

    Returns ``{"root", "manifest", "truth", "pairs": {pair_id: record}}``; each record has the
    manifest fields (``source``/``target`` relative to ``root``), ``source_uri``/``target_uri``
    (absolute), and either ``expected`` (``media_type, num_frames, start_frame, fps,
    source_size, bucket`` at the 480p bucket table) or ``error`` (an ``ErrorKind`` value) with
    the ``stage`` that raises it. ``pairs.jsonl`` (fields ``id, source, target, instruction``,
    one ``media_type`` hint) lists every pair, bad ones included.
    """
    root = Path(out_dir).resolve()
    root.mkdir(parents=True, exist_ok=True)
    _write_videos(root, size, fps)
    _write_images(root, size)
    pairs = _pairs(size, fps)
    manifest = root / "pairs.jsonl"
    keys = ("id", "source", "target", "instruction", "media_type")
    manifest.write_text(
        "".join(json.dumps({k: p[k] for k in keys if k in p}) + "\n" for p in pairs)
    )
    records = {
        p["id"]: {**p, "source_uri": str(root / p["source"]), "target_uri": str(root / p["target"])}
        for p in pairs
    }
    out = {
        "root": str(root),
        "manifest": str(manifest),
        "truth": str(root / "truth.json"),
        "pairs": records,
    }
    (root / "truth.json").write_text(json.dumps(out, indent=2))
    return out
