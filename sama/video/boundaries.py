"""Shot boundaries as frame ranges, and the streaming contract every shot detector follows.

A boundary is a range of frames ``[start, end)`` that belongs to no shot: a hard cut has
``start == end`` (the first frame of the new shot), a dissolve or fade covers its blended
frames, a damaged stretch of a file covers the frames that could not be decoded. Shots are what
lies between boundaries (``shots_from_boundaries``), so a clip cut from a shot never contains a
transition.

Streaming contract (``BoundaryDetector``): a cutter that decodes each video once feeds every
frame, downscaled by ``sama.video.shots.frame_converter``, to ``push(index, small_frame_HWC)``
and ends with ``finish(num_frames)``. Both return the boundaries that became final, in frame
order, never overlapping and never taken back. ``lag`` bounds the delay: a boundary is returned
by ``push(end - 1 + lag)`` at the latest (for a cut at ``c``: by ``push(c - 1 + lag)``). A
gradual boundary's ``start`` can lie further back than ``lag`` frames: a cutter keeping frames
of the current shot cuts that shot at ``start`` and drops the frames in ``[start, end)``.

``SceneDetectBoundaries`` wraps PySceneDetect's detectors (hard cuts only) in that contract;
``sama.video.transitions.TransitionDetector`` is the transition-aware one.

Legend: ``small_frame_HWC`` one downscaled BGR uint8 frame.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Protocol

# When two boundaries merge, the kind that says more wins (a cut next to a fade is a fade).
_KIND_RANK = {"jump": 0, "cut": 1, "wipe": 2, "dissolve": 3, "fade": 4, "damage": 5}


@dataclass(frozen=True)
class Boundary:
    """Frames ``[start, end)`` belong to no shot; ``kind`` is ``cut``, ``jump``, ``dissolve``,
    ``fade``, ``wipe`` or ``damage``; ``score`` is the detector's evidence (its scale depends on
    the kind: an L1 distance on 0-255 for the ``transitions`` detector)."""

    start: int
    end: int
    kind: str
    score: float = 0.0

    def __post_init__(self) -> None:
        if self.end < self.start or self.start < 0:
            raise ValueError(f"boundary [{self.start}, {self.end}) is not a frame range")

    @property
    def num_frames(self) -> int:
        return self.end - self.start


class BoundaryDetector(Protocol):
    """What ``sama.video.shots.make_boundary_detector`` returns (see the module docstring)."""

    lag: int

    def push(self, index: int, small_frame_HWC: Any) -> list[Boundary]: ...

    def finish(self, num_frames: int) -> list[Boundary]: ...


def merge_boundaries(boundaries: Iterable[Boundary], gap: int = 0) -> list[Boundary]:
    """Sorted boundaries with overlapping ones (or ones closer than ``gap`` frames) merged."""
    out: list[Boundary] = []
    for b in sorted(boundaries, key=lambda b: (b.start, b.end)):
        if out and b.start <= out[-1].end + gap:
            a = out[-1]
            kind = max(a.kind, b.kind, key=lambda k: _KIND_RANK.get(k, 0))
            out[-1] = Boundary(a.start, max(a.end, b.end), kind, max(a.score, b.score))
        else:
            out.append(b)
    return out


def shots_from_boundaries(
    boundaries: Iterable[Boundary], num_frames: int, max_shot_frames: int = 0
) -> list[tuple[int, int]]:
    """The shots ``(start, end)`` between ``boundaries`` in a video of ``num_frames`` frames.

    Frames inside a boundary belong to no shot; empty shots are left out. A shot longer than
    ``max_shot_frames`` (> 0) is split into ``ceil(len / max)`` near-equal parts.
    """
    shots, at = [], 0
    for b in merge_boundaries(boundaries):
        if b.start > at:
            shots.append((at, min(b.start, num_frames)))
        at = max(at, b.end)
    if at < num_frames:
        shots.append((at, num_frames))
    if max_shot_frames <= 0:
        return [(s, e) for s, e in shots if e > s]
    out = []
    for s, e in shots:
        parts = math.ceil((e - s) / max_shot_frames)
        cuts = [s + round(j * (e - s) / parts) for j in range(parts + 1)]
        out += list(zip(cuts, cuts[1:], strict=False))
    return [(s, e) for s, e in out if e > s]


class SceneDetectBoundaries:
    """A PySceneDetect detector (``ContentDetector``/``AdaptiveDetector``) as a
    ``BoundaryDetector``: its cuts become ``Boundary(c, c, "cut")``, a gap in the indices a
    ``damage`` boundary.

    ``lag`` is ``min_scene_len + 8``: the detector holds a cut back up to ``min_scene_len``
    frames (its flash filter) plus its own window (AdaptiveDetector: 2 frames). Boundaries are
    reported once ``lag`` frames passed them, so a late cut and a damage gap come out in order.
    """

    def __init__(self, detector: Any, rate: Fraction | float, min_scene_len: int) -> None:
        # FrameTimecode refuses an int rate (it would read as a frame count).
        self.detector, self.rate = detector, Fraction(rate) if isinstance(rate, int) else rate
        self.lag = int(min_scene_len) + 8
        self._n = 0
        self._pending: list[Boundary] = []
        self._reported = 0

    def push(self, index: int, small_frame_HWC: Any) -> list[Boundary]:
        from scenedetect import FrameTimecode

        if index < self._n:
            raise ValueError(f"frames must be pushed in order: expected {self._n}, got {index}")
        if index > self._n:
            self._pending.append(Boundary(self._n, index, "damage"))
        self._n = index + 1
        cuts = self.detector.process_frame(FrameTimecode(index, self.rate), small_frame_HWC)
        self._pending += [Boundary(tc.frame_num, tc.frame_num, "cut") for tc in cuts]
        return self._report(index - self.lag + 1)

    def finish(self, num_frames: int) -> list[Boundary]:
        from scenedetect import FrameTimecode

        cuts = self.detector.post_process(FrameTimecode(num_frames, self.rate))
        self._pending += [Boundary(tc.frame_num, tc.frame_num, "cut") for tc in cuts
                          if tc.frame_num < num_frames]  # fmt: skip
        if num_frames > self._n:
            self._pending.append(Boundary(self._n, num_frames, "damage"))
        return self._report(num_frames + 1)

    def _report(self, upto: int) -> list[Boundary]:
        out = []
        for b in merge_boundaries(self._pending):
            if b.end > upto:
                break
            self._pending = [x for x in self._pending if x.start > b.end]
            if b.start > 0 and (b.start >= self._reported or b.end > self._reported):
                out.append(Boundary(max(b.start, self._reported), b.end, b.kind, b.score))
                self._reported = b.end
        return out
