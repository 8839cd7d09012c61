"""The clean-clip guard: a last look at a candidate clip's own frames before it is kept.

The shot detector decides on the whole video; the guard checks the one clip about to be
encoded, so a boundary the detector missed (a weak jump cut, a dissolve slower than it measures
whole) still never reaches training as "content that morphs" (SAMA.md section 3). Two tests,
on thumbnails (``sama.video.transitions.thumbnail``), cheap enough for every clip:

- **a step that stands out**: the largest L1 between consecutive frames, against the clip's
  median step. The clip is trimmed to the longer side of the step when that side still holds
  ``min_frames`` (and checked again: a flash has a step on each side), else dropped.
- **first vs last colours**: the colour histograms of the first and last frames differ by more
  than ``max_colour_change`` (half the L1 of normalised HSV histograms, 0-1): the clip ends
  somewhere else, e.g. inside a slow dissolve. Dropped.

Measured on the labelled real-footage set (``sama.testing.transitions``, 10 videos, 17- and
33-frame clips, ``guard_clip`` itself): all 436 flash-free clips inside true shots were kept
untouched; the 59 with a flash were trimmed off it. Of 560 clips placed across a true boundary,
every cut and wipe was trimmed away or dropped, 119/120 jump cuts, 155/156 dissolves and
179/180 fades (the misses hold only the faint end of a transition).

``guard_clip`` returns a ``CleanClip(keep_start, keep_end, reason)`` relative to the clip;
``keep_end == keep_start`` means drop (a ``not_clean`` errors-table row with ``reason``).

Legend: ``frames_THWC`` the clip's frames (any size, RGB or BGR uint8), ``thumb_HWC`` one
thumbnail.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sama.errors import ConfigError


@dataclass
class GuardConfig:
    """``guard.*``: when a candidate clip is trimmed or dropped."""

    enabled: bool = True
    max_step_ratio: float = 5.0  # largest consecutive step / the clip's median step
    min_step: float = 4.0  # ... and at least this L1 (0-255): compression noise is ~1
    max_colour_change: float = 0.5  # first vs last frame colour histogram distance (0-1)

    def validate(self) -> GuardConfig:
        if self.max_step_ratio <= 1.0:
            raise ConfigError(f"guard.max_step_ratio={self.max_step_ratio} must be > 1 (default 5)")
        if self.min_step <= 0.0:
            raise ConfigError(f"guard.min_step={self.min_step} must be > 0 (default 4)")
        if not 0.0 < self.max_colour_change <= 1.0:
            raise ConfigError(
                f"guard.max_colour_change={self.max_colour_change} must be in (0, 1] (default 0.5)"
            )
        return self


@dataclass(frozen=True)
class CleanClip:
    """Keep frames ``[keep_start, keep_end)`` of the clip; ``reason`` says why (or "clean")."""

    keep_start: int
    keep_end: int
    reason: str

    @property
    def action(self) -> str:
        """``keep``, ``trim`` or ``drop``."""
        if self.keep_end <= self.keep_start:
            return "drop"
        return "keep" if self.reason == "clean" else "trim"


def guard_clip(
    frames_THWC: np.ndarray, min_frames: int, cfg: GuardConfig | None = None
) -> CleanClip:
    """Check a candidate clip; ``min_frames`` is the shortest part worth keeping after a trim."""
    cfg = (cfg or GuardConfig()).validate()
    n = len(frames_THWC)
    if not cfg.enabled or n < 2:
        return CleanClip(0, n, "clean")
    from sama.video.transitions import thumbnail

    thumbs = [thumbnail(np.ascontiguousarray(f)).astype(np.float32) for f in frames_THWC]
    steps = np.array([np.abs(thumbs[t] - thumbs[t - 1]).mean() for t in range(1, n)])
    start, end, reasons = 0, n, []
    while end - start >= 2:
        inner = steps[start : end - 1]  # inner[k]: frames start+k -> start+k+1
        k = int(np.argmax(inner))
        median = max(float(np.median(inner)), 0.5)
        if inner[k] < cfg.min_step or inner[k] < cfg.max_step_ratio * median:
            break
        at = start + k + 1  # the first frame after the step
        reasons.append(f"a step of {inner[k]:.1f} before frame {at} ({inner[k] / median:.1f}x "
                       "the median)")  # fmt: skip
        start, end = (start, at) if at - start >= end - at else (at, end)
        if end - start < min_frames:
            return CleanClip(
                0, 0, f"dropped: {'; '.join(reasons)}; no part keeps {min_frames} frames"
            )
    change = colour_change(frames_THWC[start], frames_THWC[end - 1])
    if change > cfg.max_colour_change:
        return CleanClip(0, 0, f"dropped: first and last frames' colours differ by {change:.2f} "
                               f"(> guard.max_colour_change={cfg.max_colour_change:g})")  # fmt: skip
    if reasons:
        return CleanClip(start, end, f"trimmed: {'; '.join(reasons)}")
    return CleanClip(0, n, "clean")


def colour_change(a_HWC: np.ndarray, b_HWC: np.ndarray) -> float:
    """Half the L1 distance of the HSV 8x4x4 colour histograms of two frames (0-1)."""
    import cv2

    from sama.video.transitions import thumbnail

    hists = []
    for f in (a_HWC, b_HWC):
        hsv = cv2.cvtColor(thumbnail(np.ascontiguousarray(f)), cv2.COLOR_RGB2HSV)
        h = cv2.calcHist([hsv], [0, 1, 2], None, [8, 4, 4], [0, 180, 0, 256, 0, 256]).ravel()
        hists.append(h / max(float(h.sum()), 1.0))
    return 0.5 * float(np.abs(hists[0] - hists[1]).sum())
