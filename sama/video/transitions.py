"""Shot boundaries that are not only hard cuts: dissolves, fades, wipes and jump cuts.

A clip that spans a dissolve or a fade teaches the model that content morphs (SAMA.md section 3:
the pretext tasks restore speed and order, which a transition inside the clip corrupts), so
every frame of a transition belongs to no shot. The detector is built to be cheap (it must keep
up with a 1-thread decode): each frame is reduced to a ``thumb_HWC`` (longest side
``THUMB_SIDE`` px, uint8 BGR) and every test is a handful of ``cv2.norm`` calls on thumbnails.
Distances are mean absolute differences per channel on 0-255 ("L1" below).

Tests (thresholds chosen on the labelled real-footage set of ``sama.testing.transitions``,
seeds 0-9; figures for held-out seeds in docs/benchmarks.md):

- **flash frames** first: a frame (or two) far from both neighbours, which are close to each
  other, is a flash; cut tests skip it, so a flash is never a cut.
- **cut / jump cut** between ``c - 1`` and ``c``: the nearest clean frames across ``c`` (and
  the pairs one frame further) are far apart against the shots' own motion over the same
  number of frames, right before and right after (``_motion``). A cut: >= ``cut_threshold``,
  >= 1.2x the motion on at least one side, and its colour histogram changes (>= ``HIST_CUT``:
  fast motion keeps the colours). A jump cut (same camera, same colours): >= ``jump_ratio`` x
  the motion on both sides and >= 3 (``JUMP_MIN``). 1 s jumps were found in 100% of box, cup,
  Megamind and Big Buck Bunny positions, 5/6 of carphone's, 32/83 of vtest's (10 fps: a
  second of walking is ~2.5x a frame's motion); untouched source ranges gave no boundary.
- **dissolve / fade** (blend test) at frame ``t``, scale ``k``: in a blend, frame ``t`` is the
  midpoint of ``t-k`` and ``t+k``: ``R = L1(f_t, (f_{t-k}+f_{t+k})/2)`` is small against
  ``D = L1(f_{t-k}, f_{t+k})``. A hard cut or a flash gives ``R/D = 0.5``; moving content gives
  a double exposure (R/D ~ 0.3-0.5) unless it barely moves, and then D is small. Fires when
  D >= ``blend_threshold`` and R/D <= ``blend_residual``, for k in ``BLEND_SCALES``.
- **wipe**: each pixel of ``f_t`` matches either ``f_{t-k}`` or ``f_{t+k}``, a share of them
  each (a moving edge).
- **flat frames** (luma std < ``flat_std`` and black or white): a run of them is a fade's hold,
  measured out to the ends of its fade out and fade in; 1-2 of them between similar frames are
  a flash.

A group of blend or wipe hits is then measured on the thumbnails around it (``sama.video.ramp``):
the frames' progress along the line between two references that move out while the blend goes
on, refined by the frame-to-frame steps, which a blend raises evenly; the result is padded by
``transition_margin`` frames. Detections closer than ``MERGE_GAP`` merge.

Legend: ``thumb_HWC`` one thumbnail, ``thumbs_TP`` T thumbnails flattened to P values.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import numpy as np

from sama.video.boundaries import Boundary, merge_boundaries
from sama.video.transition_params import TransitionParams

THUMB_SIDE = 64  # px, longest side of the detector's thumbnail
BLEND_SCALES = (2, 4, 8)  # frames either side of the blend test's midpoint
RING = 3  # frames each side of a cut searched for clean (non-flash) frames
LEVEL_SIDE = 8  # more frames each side kept for the motion next to a cut
CUT_MIN_RATIO = 1.2  # a cut against the shots' own motion (bikes: a cut off a fast pan, 1.48)
HIST_CUT = 0.3  # ... and its colour histogram change (see _colours_change)
# a dissolve joins two different shots: the frames either side of it differ in colour too. A
# slow pan over fine texture is, at thumbnail size, a perfect blend of its neighbours (a
# sub-pixel shift is a linear interpolation) but keeps its colours (bench_build's swaying
# block textures: 0.00-0.05; the labelled dissolves are measured in docs/benchmarks.md)
HIST_DISSOLVE = 0.2
JUMP_MIN = 3.0  # L1 floor of a jump cut (compression noise alone reaches ~1.5)
RAMP_DELTA = 0.05  # a blend's progress below this (or above 1 - this) is outside it
WIPE_MIXED = 0.1  # a wipe: each pixel shows one side or the other (a dissolve: 0.5)
WIPE_SIDE = 0.2  # ... and a fair share of it each side, unlike a cut
FLASH_RATIO = 0.5  # a flash: its neighbours are this much closer to each other than to it
GRADUAL = ("dissolve", "fade", "wipe")
FLAT_DARK, FLAT_BRIGHT = 32, 224  # a fade's flat frames are black or white (a plain colour
# field is a shot: generated test media are flat colours with a small moving square)
MIN_FIRES = 2  # a lone blend/wipe hit is motion (a transition hits at several t and k)
MERGE_GAP = 2  # boundaries this close merge into one (frames between belong to no shot)


def thumbnail(frame_HWC: np.ndarray) -> np.ndarray:
    """``thumb_HWC``: area-downscaled so the longest side is ``THUMB_SIDE`` (never upscaled)."""
    import cv2

    h, w = frame_HWC.shape[:2]
    scale = THUMB_SIDE / max(h, w)
    if scale >= 1.0:
        return np.ascontiguousarray(frame_HWC)
    size = (max(4, round(w * scale)), max(4, round(h * scale)))
    return cv2.resize(frame_HWC, size, interpolation=cv2.INTER_AREA)


class TransitionDetector:
    """Streaming detector: ``push(i, frame_HWC)`` frames in order, then ``finish(n)``.

    Both return the ``Boundary`` s that became final, in order (the contract of
    ``sama.video.boundaries``). A detection waits until every test that could merge with it has
    run: a cut ``CUT_DELAY`` frames, a blend ``reach`` frames past its last hit.
    """

    def __init__(self, params: TransitionParams) -> None:
        self.p = params
        self.reach = params.max_transition_frames // 2 + 6
        self.cut_delay = RING + LEVEL_SIDE
        self.lag = self.reach + max(BLEND_SCALES) + MERGE_GAP + 2
        self._keep = 2 * self.reach + self.lag + 4
        self.thumbs: deque[np.ndarray] = deque(maxlen=self._keep)
        self.first = 0  # frame index of thumbs[0]
        self.n = 0  # frames pushed
        self.step: dict[int, float] = {}  # i -> L1(f_i, f_{i-1})
        self.flat: dict[int, bool] = {}
        self.fires: list[tuple[int, int, float, str]] = []  # test hits (t, k, D, test), unmeasured
        self.run_start: int | None = None  # open run of flat frames
        self.runs: list[tuple[int, int]] = []  # closed flat runs, not yet measured
        self.found: list[Boundary] = []  # measured, not yet reported
        self.reported = 0  # end of the last reported boundary

    # ---- the stream --------------------------------------------------------------------------

    def push(self, index: int, frame_HWC: Any) -> list[Boundary]:
        import cv2

        if index < self.n:
            raise ValueError(f"frames must be pushed in order: expected {self.n}, got {index}")
        out = self._damage(index) if index > self.n else []
        thumb = thumbnail(frame_HWC)
        if len(self.thumbs) == self._keep:
            self.first += 1
            self.step.pop(self.first - 2, None)
            self.flat.pop(self.first - 2, None)
        self.thumbs.append(thumb)
        self.n = index + 1
        gray = cv2.cvtColor(thumb, cv2.COLOR_BGR2GRAY) if thumb.ndim == 3 else thumb
        mean, std = cv2.meanStdDev(gray)
        luma = mean[0, 0]
        self.flat[index] = bool(std[0, 0] < self.p.flat_std and not FLAT_DARK < luma < FLAT_BRIGHT)
        if index > self.first:
            self.step[index] = self._l1(index, index - 1)
        self._track_flat(index)
        self._blend_tests(index)
        if index - self.cut_delay > self.first:
            self._cut_test(index - self.cut_delay, index)
        self._measure(index, final=False)
        return out + self._report(index, final=False)

    def finish(self, num_frames: int) -> list[Boundary]:
        """Decide what is left once all ``num_frames`` frames were pushed (frames after the
        last pushed one were lost: a ``damage`` boundary)."""
        out = self._settle()
        if num_frames > self.n:
            self.found.append(Boundary(self.n, num_frames, "damage"))
        return [b for b in out + self._report(num_frames, final=True) if b.start < num_frames]

    def _settle(self) -> list[Boundary]:
        """Run every test left on the frames pushed so far and report all that was found."""
        last = self.n - 1
        if self.run_start is not None:
            self.runs.append((self.run_start, self.n))
            self.run_start = None
        for c in range(max(self.first + 1, self.n - self.cut_delay), self.n):
            self._cut_test(c, last)
        self._measure(last, final=True)
        return self._report(last, final=True)

    def _damage(self, index: int) -> list[Boundary]:
        """Frames ``n .. index-1`` were lost (``sama.video.salvage``): settle what came before,
        start afresh after the gap, so no test compares frames across it."""
        out = self._settle()
        self.found.append(Boundary(self.n, index, "damage"))
        self.thumbs.clear()
        self.step.clear()
        self.flat.clear()
        self.first = index
        return out

    # ---- tests --------------------------------------------------------------------------------

    def _t(self, i: int) -> np.ndarray:
        return self.thumbs[i - self.first]

    def _l1(self, i: int, j: int) -> float:
        import cv2

        a = self._t(i)
        return float(cv2.norm(a, self._t(j), cv2.NORM_L1)) / a.size

    def _blend_tests(self, i: int) -> None:
        """The blend and wipe tests centred on ``i - k`` for every scale ``k``."""
        import cv2

        for k in BLEND_SCALES:
            t = i - k
            if t - k < self.first:
                continue
            a, b, mid = self._t(t - k), self._t(i), self._t(t)
            n = a.size
            d = float(cv2.norm(a, b, cv2.NORM_L1)) / n
            if d < self.p.blend_threshold:
                continue
            r = float(cv2.norm(mid, cv2.addWeighted(a, 0.5, b, 0.5, 0.0), cv2.NORM_L1)) / n
            if r <= self.p.blend_residual * d:
                self.fires.append((t, k, d, "blend"))
                continue
            da, db = cv2.absdiff(mid, a), cv2.absdiff(mid, b)
            mixed = float(cv2.norm(cv2.min(da, db), cv2.NORM_L1)) / n
            side = min(cv2.norm(da, cv2.NORM_L1), cv2.norm(db, cv2.NORM_L1)) / n
            if mixed <= WIPE_MIXED * d and side >= WIPE_SIDE * d:
                self.fires.append((t, k, d, "wipe"))

    def _cut_test(self, c: int, newest: int) -> None:
        """A cut or jump cut between ``c - 1`` and ``c`` (flash frames set aside)."""
        lo, hi = max(self.first + 1, c - RING - LEVEL_SIDE), min(newest, c + RING + LEVEL_SIDE - 1)
        flash = self._flash_frames(max(lo, c - RING - 1), min(hi, c + RING + 1))
        clean = [j for j in range(lo - 1, hi + 1) if j not in flash]
        before, after = [j for j in clean if j < c], [j for j in clean if j >= c]
        if not before or not after or c - before[-1] > RING or after[0] - c >= RING:
            return
        pairs = [(before[-1], after[0]), *[(i, after[0]) for i in before[-2:-1]],
                 *[(before[-1], j) for j in after[1:2]]]  # fmt: skip
        dists = [self._l1(j, i) for i, j in pairs]
        raw = min(dists)
        if raw < JUMP_MIN:
            return
        sides = [self._motion(before, after, i, j) for i, j in pairs]
        # A cut (its colours change) need only stand out against one side's motion: the shot it
        # cuts into may be a whip pan (Big Buck Bunny 8085: a 66 step from a still shot into
        # steps of 22-41). A jump cut keeps the colours, so it must stand out against both,
        # or a still shot that starts moving would be one.
        either = min(d / max(1.0, min(m)) for d, m in zip(dists, sides, strict=True))
        both = [d / max(1.0, *m) for d, m in zip(dists, sides, strict=True)]
        if (
            raw >= self.p.cut_threshold
            and either >= CUT_MIN_RATIO
            and self._colours_change(*pairs[0])
        ):
            self.found.append(Boundary(c, c, "cut", raw))
        elif (
            min(both) >= CUT_MIN_RATIO
            and both[0] >= self.p.jump_ratio
            and pairs[0][1] - pairs[0][0] == 1
        ):
            # Not next to a flash: the encoder blurs the frames around one (labelled set: 3x).
            self.found.append(Boundary(c, c, "jump", raw))

    def _colours_change(self, i: int, j: int, least: float = HIST_CUT) -> bool:
        """The colour histograms (HSV 8x4x4) of ``i`` and ``j`` differ by >= ``least``
        (half the L1 of the normalised histograms): fast motion keeps the colours, a cut does
        not (labelled cuts 0.59-0.99 and Big Buck Bunny trailer cuts 0.58-0.71; an arm swept
        across the trailer's frame 0.22, 1-s jumps 0.06-0.27)."""
        import cv2

        hists = []
        for k in (i, j):
            hsv = cv2.cvtColor(self._t(k), cv2.COLOR_BGR2HSV)
            h = cv2.calcHist([hsv], [0, 1, 2], None, [8, 4, 4], [0, 180, 0, 256, 0, 256]).ravel()
            hists.append(h / max(float(h.sum()), 1.0))
        return 0.5 * float(np.abs(hists[0] - hists[1]).sum()) >= least

    def _motion(self, before: list[int], after: list[int], i: int, j: int) -> tuple[float, float]:
        """The shots' own change over as many frames as ``i`` to ``j`` (flash frames skipped),
        before ``i`` and after ``j``: on each side the larger L1 of the two nearest such pairs
        (0 where a side has none). Nearest, not a median over the window: motion that slows
        down before a jump cut or speeds up at ``c`` is judged against what it does there."""
        g = after.index(j) + len(before) - before.index(i)
        seq = [*before, *after]
        near_before = [self._l1(seq[m + g], seq[m])
                       for m in (seq.index(i) - g, seq.index(i) - g - 1) if m >= 0]  # fmt: skip
        near_after = [self._l1(seq[m + g], seq[m])
                      for m in (seq.index(j), seq.index(j) + 1) if m + g < len(seq)]  # fmt: skip
        lone = max(near_before + near_after, default=0.0)  # a side without pairs: the other's
        return max(near_before, default=lone), max(near_after, default=lone)

    def _flash_frames(self, lo: int, hi: int) -> set[int]:
        """Frames in ``[lo, hi]`` of a 1- or 2-frame flash: far from both neighbours, which are
        close to each other."""
        out: set[int] = set()
        for f in range(max(lo, self.first + 1), hi):
            for n in (1, 2):
                if f + n > hi:
                    continue
                a, b = self._l1(f, f - 1), self._l1(f + n, f + n - 1)
                if min(a, b) >= JUMP_MIN and self._l1(f + n, f - 1) <= FLASH_RATIO * min(a, b):
                    out.update(range(f, f + n))
        return out

    # ---- gradual transitions ------------------------------------------------------------------

    def _track_flat(self, i: int) -> None:
        if self.flat[i] and self.run_start is None:
            self.run_start = i
        elif not self.flat[i] and self.run_start is not None:
            self.runs.append((self.run_start, i))
            self.run_start = None

    def _measure(self, newest: int, final: bool) -> None:
        """Measure blend groups and flat runs that can no longer grow."""
        self.fires.sort()
        while self.fires:
            n = 1
            while n < len(self.fires) and self.fires[n][0] - self.fires[n - 1][0] <= MERGE_GAP + 1:
                n += 1
            group = self.fires[:n]
            if not final and group[-1][0] + self.reach > newest:
                break
            del self.fires[:n]
            if len(group) >= MIN_FIRES:
                self._measure_blend(group, newest)
        while self.runs and (final or self.runs[0][1] - 1 + self.reach <= newest):
            self._measure_run(*self.runs.pop(0), newest)

    def _floor(self) -> int:
        """Frames before this belong to an earlier transition or are gone from the buffer (a
        measured blend may run over a cut found before it: a fade's first step looks like one)."""
        ends = [b.end for b in self.found if b.kind in GRADUAL]
        return max([self.first, self.reported, *ends])

    def _window(self, lo: int, hi: int) -> list[np.ndarray]:
        return [self._t(i) for i in range(lo, hi + 1)]

    def _measure_blend(self, group: list[tuple[int, int, float, str]], newest: int) -> None:
        from sama.video.ramp import DROP, measure_ramp, refine_by_steps

        t0, k0, d, test = max(group, key=lambda f: f[2])
        lo = max(self._floor(), group[0][0] - self.reach)
        hi = min(newest, group[-1][0] + self.reach)
        if not lo <= t0 - k0 < t0 + k0 <= hi:
            return
        s, e, dist, resid = measure_ramp(self._window(lo, hi), t0 - k0 - lo, t0 + k0 - lo,
                                         delta=RAMP_DELTA, score=test)  # fmt: skip
        s, e = refine_by_steps(
            self.step, s + lo, e + lo, lo, hi, drop=0.0 if test == "wipe" else DROP
        )
        limit = (WIPE_MIXED if test == "wipe" else self.p.blend_residual) * 2
        if not s <= t0 < e or dist < self.p.blend_threshold or resid > limit:
            return
        flat = any(self.flat.get(j, False) for j in range(s - 1, e + 1))
        kind = "wipe" if test == "wipe" else "fade" if flat else "dissolve"
        if kind == "dissolve" and not self._colours_change(max(lo, s - 1), min(hi, e), HIST_DISSOLVE):
            return
        self._add(s, e, kind, d)

    def _measure_run(self, start: int, end: int, newest: int) -> None:
        """A run of flat frames: a fade's hold (with its fade out and in), or a flash."""
        from sama.video.ramp import measure_ramp

        floor = self._floor()
        if end - start <= 2 and start - 1 >= floor and end <= newest:
            jump_in, jump_out = self._l1(start, start - 1), self._l1(end, end - 1)
            if self._l1(end, start - 1) <= FLASH_RATIO * min(jump_in, jump_out):
                return  # a flash: the frames either side resemble each other
        lo, hi = max(floor, start - self.reach), min(newest, end - 1 + self.reach)
        s, e = start, end
        if lo < start - 1:
            a = max(lo, start - 4)
            s = measure_ramp(self._window(lo, start), a - lo, start - lo, fix_b=True,
                             delta=RAMP_DELTA)[0] + lo  # fmt: skip
        if hi > end:
            b = min(hi, end + 3)
            e = measure_ramp(self._window(end - 1, hi), 0, b - end + 1, fix_a=True,
                             delta=RAMP_DELTA)[1] + end - 1  # fmt: skip
        self._add(min(s, start), max(e, end), "fade", 255.0)

    def _add(self, s: int, e: int, kind: str, score: float) -> None:
        m = self.p.transition_margin
        self.found.append(Boundary(max(0, s - m), e + m, kind, score))

    def _report(self, newest: int, final: bool) -> list[Boundary]:
        """Report the merged boundaries no pending test can still merge with."""
        pending = [f[0] - self.reach for f in self.fires] + [s - self.reach for s, _ in self.runs]
        if self.run_start is not None:
            pending.append(self.run_start - self.reach)
        horizon = min(pending, default=newest + 1)
        out: list[Boundary] = []
        for b in merge_boundaries(self.found, MERGE_GAP):
            ready = b.end + MERGE_GAP + self.cut_delay <= newest and b.end + MERGE_GAP < horizon
            if not (final or ready or b.end - 1 + self.lag <= newest):
                break
            self.found = [x for x in self.found if x.start > b.end]
            start = max(b.start, self.reported)
            if b.end > start or (b.start == b.end and b.start >= self.reported):
                out.append(Boundary(start, b.end, b.kind, b.score))
                self.reported = b.end
        return out
