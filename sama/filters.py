"""Clip filters on the statistics every clip row already has: too short, black, blown out,
static, or moving too much.

Data teams filter before anything else (video2dataset, Open-Sora's motion thresholds): a black
or frozen clip teaches the pretext tasks nothing (SAMA.md section 3 restores motion and order,
and a static clip has neither). ``check_clip`` returns ``None`` (keep) or ``(kind, message)``
with an ``ErrorKind`` named after the filter, so a dropped clip becomes an errors-table row
that says which filter and which value; nothing vanishes. Defaults drop only fully static
(``motion_score`` < 0.1: a still image re-encoded measured 0.000-0.006, the slowest real
footage here, opencv-doc's ``box`` at 64p, 0.44) and black clips (``mean_luma`` < 8: a black
clip measured 0.0, the darkest real shot here, a Megamind night scene, 34.8).

Units: ``mean_luma`` and ``motion_score`` are on 0-255 (BT.601 luma of the clip frames at
bucket size; ``motion_score`` is the mean absolute luma change between consecutive frames).
"""

from __future__ import annotations

from dataclasses import dataclass

from sama.errors import ConfigError, ErrorKind


@dataclass
class FilterConfig:
    """``filters.*``: a clip outside any bound is dropped with the filter's error kind."""

    min_motion: float = 0.1  # motion_score below: static (a still image, a frozen stream)
    max_motion: float | None = None  # motion_score above: shaking, strobing (None: no limit)
    min_luma: float = 8.0  # mean_luma below: black
    max_luma: float = 255.0  # mean_luma above: blown out (255: no limit)
    min_seconds: float = 0.0  # clip shorter than this (0: no limit)

    def validate(self) -> FilterConfig:
        """Raise ``ConfigError`` naming the field and the fix; return self when valid."""
        if not 0.0 <= self.min_motion <= 255.0:
            raise ConfigError(f"filters.min_motion={self.min_motion} must be in [0, 255] (0: off)")
        if self.max_motion is not None and not self.min_motion < self.max_motion <= 255.0:
            raise ConfigError(
                f"filters.max_motion={self.max_motion} must be above min_motion "
                f"({self.min_motion}) and <= 255, or null (no limit)"
            )
        if not 0.0 <= self.min_luma < self.max_luma <= 255.0:
            raise ConfigError(
                f"filters.min_luma={self.min_luma} and max_luma={self.max_luma} must satisfy "
                "0 <= min_luma < max_luma <= 255"
            )
        if self.min_seconds < 0.0:
            raise ConfigError(f"filters.min_seconds={self.min_seconds} must be >= 0 (0: off)")
        return self

    def describe(self) -> str:
        """One line with every bound, for provenance and the card."""
        top = "none" if self.max_motion is None else f"{self.max_motion:g}"
        return (
            f"motion in [{self.min_motion:g}, {top}], luma in [{self.min_luma:g}, "
            f"{self.max_luma:g}], seconds >= {self.min_seconds:g}"
        )


def check_clip(
    mean_luma: float, motion_score: float, num_frames: int, fps: float, cfg: FilterConfig
) -> tuple[ErrorKind, str] | None:
    """``None`` to keep the clip, else ``(kind, message)`` for its errors-table row.

    Checked in this order (the first that fails names the row): short, dark, bright, static,
    too much motion. A black clip is also static; it is reported as dark, the stronger reason.
    """
    seconds = num_frames / fps if fps > 0 else 0.0
    if cfg.min_seconds and seconds < cfg.min_seconds:
        return ErrorKind.FILTERED_SHORT, (
            f"{num_frames} frames = {seconds:.2f} s < filters.min_seconds={cfg.min_seconds:g}"
        )
    if mean_luma < cfg.min_luma:
        return ErrorKind.FILTERED_DARK, (
            f"mean_luma {mean_luma:.1f} < filters.min_luma={cfg.min_luma:g} (black)"
        )
    if mean_luma > cfg.max_luma:
        return ErrorKind.FILTERED_BRIGHT, (
            f"mean_luma {mean_luma:.1f} > filters.max_luma={cfg.max_luma:g} (blown out)"
        )
    if motion_score < cfg.min_motion:
        return ErrorKind.FILTERED_STATIC, (
            f"motion_score {motion_score:.3f} < filters.min_motion={cfg.min_motion:g} (static)"
        )
    if cfg.max_motion is not None and motion_score > cfg.max_motion:
        return ErrorKind.FILTERED_MOTION, (
            f"motion_score {motion_score:.2f} > filters.max_motion={cfg.max_motion:g}"
        )
    return None
