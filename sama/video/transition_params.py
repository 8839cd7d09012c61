"""The thresholds of the ``transitions`` shot detector, checked and named in one place.

They are ``ShotConfig`` fields of the same names (``shots.cut_threshold=...`` on the command
line); ``describe()`` is the part of ``shot_detector`` that names them, so every clip row says
which thresholds cut it. What each one means: ``sama.video.transitions``.
"""

from __future__ import annotations

from dataclasses import dataclass

from sama.errors import ConfigError


@dataclass(frozen=True)
class TransitionParams:
    """Distances are mean absolute differences of thumbnails on 0-255."""

    cut_threshold: float = 12.0  # smallest distance across a hard cut
    jump_ratio: float = 3.0  # a jump cut's distance against the shot's own motion
    blend_threshold: float = 16.0  # smallest distance across a dissolve or fade
    blend_residual: float = 0.25  # a blend's midpoint off the average, relative (cut: 0.5)
    flat_std: float = 8.0  # luma std of a flat (black or white) fade frame
    transition_margin: int = 1  # frames added each side of a gradual transition
    max_transition_frames: int = 30  # longest dissolve or fade measured whole

    def validate(self) -> TransitionParams:
        """Raise ``ConfigError`` naming the ``shots.`` field and the fix; return self."""
        for name, hi, default in (
            ("cut_threshold", 255.0, 12.0),
            ("blend_threshold", 255.0, 16.0),
            ("flat_std", 128.0, 8.0),
        ):
            if not 0.0 < getattr(self, name) <= hi:
                raise ConfigError(
                    f"shots.{name}={getattr(self, name)} must be in (0, {hi:g}] "
                    f"(default {default:g})"
                )
        if self.jump_ratio <= 1.0:
            raise ConfigError(f"shots.jump_ratio={self.jump_ratio} must be > 1 (default 3.0)")
        if not 0.0 < self.blend_residual < 0.5:
            raise ConfigError(
                f"shots.blend_residual={self.blend_residual} must be in (0, 0.5): a hard cut "
                "scores 0.5 (default 0.25)"
            )
        if not 0 <= self.transition_margin <= 8:
            raise ConfigError(
                f"shots.transition_margin={self.transition_margin} must be in [0, 8] (default 1)"
            )
        if not 4 <= self.max_transition_frames <= 240:
            raise ConfigError(
                f"shots.max_transition_frames={self.max_transition_frames} must be in [4, 240] "
                "(default 30)"
            )
        return self

    def describe(self) -> str:
        """``sama-transitions-v1(...)``: the algorithm's version and every threshold."""
        return (
            f"sama-transitions-v1(cut={self.cut_threshold:g}, jump_ratio={self.jump_ratio:g}, "
            f"blend={self.blend_threshold:g}/{self.blend_residual:g}, flat_std={self.flat_std:g}, "
            f"margin={self.transition_margin}, max_transition={self.max_transition_frames})"
        )
