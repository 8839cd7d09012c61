"""Clip filters: each drops what it should, with its own error kind (sama.filters)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from sama.errors import ConfigError, ErrorKind
from sama.filters import FilterConfig, check_clip
from sama.testing.footage import footage
from sama.video.buckets import resize_crop
from sama.video.decode import iter_frames

_LUMA = np.array([0.299, 0.587, 0.114], np.float32)  # BT.601, as the clip rows' mean_luma


def _stats(clip_THWC: np.ndarray) -> tuple[float, float]:
    luma_THW = clip_THWC.astype(np.float32) @ _LUMA
    return float(luma_THW.mean()), float(np.abs(np.diff(luma_THW, axis=0)).mean())


@pytest.fixture(scope="module")
def clips() -> dict[str, tuple[float, float]]:
    """(mean_luma, motion_score) of real 17-frame clips and of their black/still/white copies."""
    real = np.stack([resize_crop(f, (96, 64)) for f in iter_frames(str(footage("box")), 5, 17)])
    dark = np.stack(
        [resize_crop(f, (96, 64)) for f in iter_frames(str(footage("megamind")), 30, 17)]
    )
    return {
        "box": _stats(real),
        "megamind_night": _stats(dark),
        "black": _stats(np.zeros_like(real)),
        "still": _stats(np.repeat(real[:1], 17, axis=0)),
        "white": _stats(np.full_like(real, 255)),
        "strobe": _stats(np.stack([real[0] if i % 2 else 255 - real[0] for i in range(17)])),
    }


def test_defaults_keep_real_footage_and_drop_only_static_or_black(clips):
    cfg = FilterConfig()
    for name in ("box", "megamind_night", "strobe"):
        assert check_clip(*clips[name], 17, 25.0, cfg) is None, name
    assert check_clip(*clips["black"], 17, 25.0, cfg)[0] == ErrorKind.FILTERED_DARK
    assert check_clip(*clips["still"], 17, 25.0, cfg)[0] == ErrorKind.FILTERED_STATIC
    assert check_clip(*clips["white"], 17, 25.0, cfg)[0] == ErrorKind.FILTERED_STATIC


@pytest.mark.parametrize(
    ("change", "clip", "kind"),
    [
        ({"min_seconds": 1.0}, "box", ErrorKind.FILTERED_SHORT),  # 17 frames at 25 fps
        ({"min_luma": 40.0}, "megamind_night", ErrorKind.FILTERED_DARK),
        ({"max_luma": 250.0, "min_motion": 0.0}, "white", ErrorKind.FILTERED_BRIGHT),
        ({"min_motion": 1.0}, "box", ErrorKind.FILTERED_STATIC),  # box barely moves early on
        ({"max_motion": 20.0}, "strobe", ErrorKind.FILTERED_MOTION),
    ],
)
def test_each_filter_drops_what_it_should_and_names_itself(clips, change, clip, kind):
    cfg = dataclasses.replace(FilterConfig(), **change).validate()
    got = check_clip(*clips[clip], 17, 25.0, cfg)
    assert got is not None and got[0] == kind
    field = next(iter(change))
    assert f"filters.{field}=" in got[1]
    assert kind.value.startswith("filtered_")
    assert check_clip(*clips[clip], 17, 25.0, FilterConfig()) is None or clip == "white"


@pytest.mark.parametrize(
    "change",
    [
        {"min_motion": -1.0},
        {"max_motion": 0.05},
        {"min_luma": 200.0, "max_luma": 100.0},
        {"min_seconds": -0.5},
    ],  # fmt: skip
)
def test_invalid_filters_fail_fast(change):
    with pytest.raises(ConfigError, match="filters."):
        dataclasses.replace(FilterConfig(), **change).validate()


def test_describe_names_every_bound():
    assert FilterConfig().describe() == "motion in [0.1, none], luma in [8, 255], seconds >= 0"
