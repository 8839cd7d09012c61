"""Clips out of a video: which frames (plans), how a candidate clip is finished (the clean-clip
guard, the filters), and the single-pass shot cutter.

SAMA.md §1: a clip is the first F = 4k+1 contiguous frames of a shot (or, with ``multi``,
back-to-back clips), cover-resized and centre-cropped to the aspect bucket nearest the video's.
Shots lie between the boundaries the detector reports (``sama.video.boundaries``: cuts, jump
cuts, dissolves, fades, wipes, and damage a salvaged decode skipped); transition frames belong
to no shot, so no clip spans one. A candidate clip is then checked on its own frames
(``finish_clip``: ``sama.video.clean_clip.guard_clip`` trims or drops it when a boundary the
detector missed shows; ``sama.filters.check_clip`` drops static, black, blown-out, short or
shaking clips), and what is dropped is returned with its reason, to become an error row.

The build runs the jobs of ``sama.video.cut_jobs`` in the decode sandbox; this module is their
pure parts. Legend: ``frame_HWC`` one RGB frame at the bucket size, ``clip_THWC`` a clip.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from sama.errors import ErrorKind, SampleError
from sama.filters import FilterConfig, check_clip
from sama.video.clean_clip import GuardConfig, guard_clip
from sama.video.frames import clip_starts, floor_4k1

_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # BT.601


@dataclass(frozen=True)
class ClipPlan:
    shot_index: int
    clip_index: int
    shot_start: int
    shot_end: int
    start: int
    num_frames: int

    @property
    def end(self) -> int:
        return self.start + self.num_frames


def plan_clips(shot_starts: list[int], shot_ends: list[int], num_frames: int,
               long_shot: str = "first", min_frames: int = 0,
               max_clips_per_shot: int = 0) -> list[ClipPlan]:  # fmt: skip
    """The clips of a video: per shot, ``clip_starts`` clips of ``num_frames`` frames, or one
    ``floor_4k1(len)`` clip if the shot is shorter but has ``min_frames`` (> 0)."""
    plans = []
    for s, (a, b) in enumerate(zip(shot_starts, shot_ends, strict=True)):
        length = b - a
        if length >= num_frames:
            starts, n = clip_starts(length, num_frames, long_shot), num_frames
            if max_clips_per_shot:
                starts = starts[:max_clips_per_shot]
        elif min_frames and length >= min_frames:
            starts, n = [0], floor_4k1(length)
        else:
            continue
        plans += [ClipPlan(s, c, a, b, a + st, n) for c, st in enumerate(starts)]
    return plans


def decode_runs(plans: list[ClipPlan], seek_gap_frames: int) -> list[list[ClipPlan]]:
    """Group clips (in frame order) into runs decoded as one stream; a longer gap splits."""
    runs: list[list[ClipPlan]] = []
    for p in sorted(plans, key=lambda p: p.start):  # clips never overlap (see plan_clips)
        if runs and p.start - runs[-1][-1].end <= seek_gap_frames:
            runs[-1].append(p)
        else:
            runs.append([p])
    return runs


STATS_STEP = 4  # clip statistics on every 4th pixel of every 4th row


def clip_stats(clip_THWC: np.ndarray) -> tuple[float, float]:
    """(mean luma, mean |luma difference| of consecutive frames), both on a 0-255 scale.

    Computed on a 4x-subsampled grid: the full grid cost ~0.5 s per 81-frame 480p clip here
    (a float32 copy of all 97 MB), more than decoding its frames, for the same two numbers to
    within a fraction of a grey level."""
    grid_THWC = clip_THWC[:, ::STATS_STEP, ::STATS_STEP]
    luma_THW = grid_THWC.astype(np.float32) @ _LUMA
    motion = float(np.abs(np.diff(luma_THW, axis=0)).mean()) if len(luma_THW) > 1 else 0.0
    return float(luma_THW.mean()), motion


def unusable(shot_lengths: list[int], total: int, need: int, stage: str) -> SampleError:
    """Why a video gave no clip: too short as a whole, or no shot long enough."""
    if total < need:
        return SampleError(ErrorKind.TOO_SHORT, f"{total} decodable frames, a clip needs {need}",
                           stage=stage)  # fmt: skip
    return SampleError(
        ErrorKind.NO_USABLE_SHOT,
        f"{len(shot_lengths)} shots, the longest has {max(shot_lengths, default=0)} frames, "
        f"a clip needs {need}",
        stage=stage,
    )


def bucket_frame(frame: Any, reformatter: Any, bucket: tuple[int, int]) -> np.ndarray:
    """PyAV frame -> upright RGB ``frame_HWC`` at ``bucket`` (W, H): FFmpeg's scaler resizes to
    the cover size while converting (area filter when shrinking), then a centre crop."""
    from sama.video.buckets import resize_crop_plan
    from sama.video.decode import upright_rgb

    k = (int(round(getattr(frame, "rotation", 0) or 0)) // 90) % 4
    w, h = (frame.height, frame.width) if k % 2 else (frame.width, frame.height)
    plan = resize_crop_plan(w, h, *bucket)
    x0, y0, x1, y1 = plan.box
    return upright_rgb(frame, reformatter, plan.resized)[y0:y1, x0:x1]




@dataclass(frozen=True)
class CutSpec:
    """What finishing a clip needs (picklable: it crosses into the decode sandbox)."""

    num_frames: int
    min_frames: int  # 0: only full-length clips
    bucket: tuple[int, int]
    fps: float
    guard: GuardConfig = field(default_factory=GuardConfig)
    filters: FilterConfig = field(default_factory=FilterConfig)

    @property
    def shortest(self) -> int:
        return self.min_frames or self.num_frames

    def clip_length(self, shot_length: int) -> int:
        """Frames of the clip a shot of ``shot_length`` frames gives (0: none)."""
        if shot_length >= self.num_frames:
            return self.num_frames
        return floor_4k1(shot_length) if self.min_frames and shot_length >= self.min_frames else 0


def finish_clip(plan: ClipPlan, clip_THWC: np.ndarray, spec: CutSpec) -> dict:
    """A candidate clip, checked: ``{"plan", "frames", "luma", "motion", "trim"}`` to keep
    (trimmed by the guard: ``trim`` says why, and ``plan`` is the kept part), or
    ``{"plan", "drop": (kind, stage, message)}`` for its error row."""
    guard = guard_clip(clip_THWC, spec.shortest, spec.guard)
    trim = None
    if guard.action != "keep":
        n = floor_4k1(guard.keep_end - guard.keep_start)
        if guard.action == "drop" or n < spec.shortest:
            return {"plan": plan, "drop": (ErrorKind.NOT_CLEAN.value, "clean_clip", guard.reason)}
        clip_THWC = clip_THWC[guard.keep_start : guard.keep_start + n]
        plan = replace(plan, start=plan.start + guard.keep_start, num_frames=n)
        trim = guard.reason
    luma, motion = clip_stats(clip_THWC)
    filtered = check_clip(luma, motion, plan.num_frames, spec.fps, spec.filters)
    if filtered is not None:
        return {"plan": plan, "drop": (filtered[0].value, "filter", filtered[1])}
    return {"plan": plan, "frames": clip_THWC, "luma": luma, "motion": motion, "trim": trim}


RAW_HOLD_BYTES = 256 * 2**20  # decoded frames a shot may hold before converting them


@dataclass
class ShotClip:
    """A finished shot and the frames of its clip (fewer than needed: re-decode them). The
    first ``converted`` are in ``frames`` at bucket size, the rest still decoded frames in
    ``raw``: a frame is converted only once its shot is sure to reach a clip (or ``raw`` holds
    ``RAW_HOLD_BYTES``), so the many shots too short for one cost no conversion at all."""

    start: int
    end: int
    frames: np.ndarray | None = None  # (window, H, W, 3), converted up to ``converted``
    converted: int = 0
    raw: list = field(default_factory=list)

    @property
    def filled(self) -> int:
        return self.converted + len(self.raw)


@dataclass
class ShotCutter:
    """Feeds frames to a boundary detector; keeps the first ``window`` frames of each shot.

    ``push(i, raw)`` / ``finish(n)`` return the shots that ended; ``clip_frames(shot, n)`` the
    first ``n`` frames of one at bucket size. ``to_small(raw)`` is the detector's input,
    ``to_clip(raw)`` the frame at bucket size (called once per frame of a clip), ``alloc(n)`` a
    buffer for ``n`` frames at bucket size. A detector reports a boundary at the latest ``lag``
    frames after its last frame, so a frame is assigned to the current shot only once it is
    ``lag`` frames old; a boundary whose start lies behind frames already assigned (a gradual
    one measured whole) cuts the shot back to its start. Frames of a boundary belong to no
    shot; indices may jump (frames a salvaged decode lost: the detector reports the gap).
    """

    detector: Any
    window: int
    to_small: Callable[[Any], Any]
    to_clip: Callable[[Any], np.ndarray]
    alloc: Callable[[int], np.ndarray]
    hold_frames: int = 0  # decoded frames held unconverted (0: the whole window)
    shot: ShotClip = field(init=False)
    recent: deque = field(init=False, default_factory=deque)

    def __post_init__(self) -> None:
        self.shot = ShotClip(0, 0)
        self.lag = int(self.detector.lag)
        self.hold = min(self.window, self.hold_frames or self.window)

    def push(self, i: int, raw: Any) -> list[ShotClip]:
        self.recent.append((i, raw))
        done = [s for b in self.detector.push(i, self.to_small(raw)) for s in self._boundary(b)]
        while self.recent and self.recent[0][0] < i - self.lag:
            self._assign(*self.recent.popleft())
        return done

    def finish(self, num_frames: int) -> list[ShotClip]:
        done = [s for b in self.detector.finish(num_frames) if b.start < num_frames
                for s in self._boundary(b)]  # fmt: skip
        while self.recent:
            self._assign(*self.recent.popleft())
        self.shot.end = num_frames
        return [*done, self.shot] if num_frames > self.shot.start else done

    def clip_frames(self, shot: ShotClip, n: int) -> np.ndarray:
        """The first ``n`` (<= ``shot.filled``) frames of ``shot`` at bucket size."""
        self._convert(shot, n)
        return shot.frames[:n]

    def _convert(self, shot: ShotClip, upto: int | None = None) -> None:
        upto = shot.filled if upto is None else upto
        if upto <= shot.converted:
            return
        if shot.frames is None:
            shot.frames = self.alloc(self.window)
        take = upto - shot.converted
        for k, raw in enumerate(shot.raw[:take]):
            shot.frames[shot.converted + k] = self.to_clip(raw)
        shot.raw = shot.raw[take:]
        shot.converted = upto

    def _assign(self, j: int, raw: Any) -> None:
        """Frame ``j`` belongs to the current shot for good: keep it if it is in the window."""
        s = self.shot
        if s.start <= j < s.start + self.window and j == s.start + s.filled:
            s.raw.append(raw)
            if s.filled == self.window or len(s.raw) >= self.hold:
                self._convert(s)  # it reaches a clip (or holds too much decoded video)

    def _boundary(self, b: Any) -> list[ShotClip]:
        old = self.shot
        while self.recent and self.recent[0][0] < b.start:
            self._assign(*self.recent.popleft())
        while self.recent and self.recent[0][0] < b.end:  # inside the boundary: no shot's
            self.recent.popleft()
        old.end = max(old.start, b.start)
        had, keep = old.filled, max(0, b.start - old.start)
        new = ShotClip(b.end, b.end)
        late = had - (b.end - old.start)  # frames >= b.end assigned too early (a late report)
        if late > 0:
            self._convert(old)
            new.frames = self.alloc(self.window)
            new.frames[:late] = old.frames[had - late : had]
            new.converted = late
        if keep < old.filled:  # cut back to the boundary's start
            if keep >= old.converted:
                old.raw = old.raw[: keep - old.converted]
            else:
                old.converted, old.raw = keep, []
        self.shot = new
        return [old] if old.end > old.start else []
