"""The clean-clip guard on real footage (sama.video.clean_clip)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from sama.errors import ConfigError
from sama.testing.footage import footage
from sama.video.buckets import resize_crop
from sama.video.clean_clip import GuardConfig, colour_change, guard_clip
from sama.video.decode import iter_frames


def _clip(name: str, start: int, n: int) -> np.ndarray:
    return np.stack([resize_crop(f, (96, 64)) for f in iter_frames(str(footage(name)), start, n)])


@pytest.fixture(scope="module")
def shots() -> dict[str, np.ndarray]:
    return {
        "box": _clip("box", 100, 66),
        "cup": _clip("cup", 60, 33),
        "vtest": _clip("vtest", 0, 33),
    }


def test_clean_clips_are_kept(shots):
    for name in ("box", "cup", "vtest"):
        got = guard_clip(shots[name][:33], min_frames=17)
        assert (got.keep_start, got.keep_end, got.reason, got.action) == (0, 33, "clean", "keep")


def test_a_jump_cut_inside_is_trimmed_to_the_longer_side(shots):
    box = shots["box"]
    clip = np.concatenate([box[:21], box[51:63]])  # a second (30 frames) dropped after frame 20
    got = guard_clip(clip, min_frames=17)
    assert (got.keep_start, got.keep_end, got.action) == (0, 21, "trim")
    assert "before frame 21" in got.reason
    assert guard_clip(clip, min_frames=25).action == "drop"  # no side is long enough


def test_a_hard_cut_or_a_flash_is_trimmed(shots):
    cut = np.concatenate([shots["cup"][:10], shots["vtest"][:23]])
    got = guard_clip(cut, min_frames=17)
    assert (got.keep_start, got.keep_end) == (10, 33)
    flash = shots["vtest"].copy()
    flash[25] = 255  # a white frame near the end
    got = guard_clip(flash, min_frames=17)
    assert (got.keep_start, got.keep_end) == (0, 25) and got.reason.count("a step of") == 1
    flash[8] = 255  # and one near the start: both trimmed off, the part between kept
    got = guard_clip(flash, min_frames=9)
    assert (got.keep_start, got.keep_end) == (9, 25), got


def test_a_slow_dissolve_is_dropped(shots):
    a, b = shots["cup"].astype(np.float32), shots["vtest"].astype(np.float32)
    alpha = np.linspace(0, 1, 33)[:, None, None, None]
    dissolve = np.clip(a * (1 - alpha) + b * alpha + 0.5, 0, 255).astype(np.uint8)
    got = guard_clip(dissolve, min_frames=17)
    assert got.action == "drop" and "colours differ" in got.reason
    assert colour_change(dissolve[0], dissolve[-1]) > 0.5 > colour_change(a[0], a[-1])


def test_guard_config(shots):
    assert guard_clip(shots["box"][:5], 3, GuardConfig(enabled=False)).action == "keep"
    for change in ({"max_step_ratio": 1.0}, {"min_step": 0.0}, {"max_colour_change": 0.0}):
        with pytest.raises(ConfigError, match="guard."):
            dataclasses.replace(GuardConfig(), **change).validate()
