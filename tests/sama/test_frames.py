"""The 4k+1 frame rule (SAMA.md section 1)."""

from __future__ import annotations

import pytest

from sama.video.frames import (
    DEFAULT_NUM_FRAMES,
    clip_starts,
    floor_4k1,
    is_valid_num_frames,
    latent_num_frames,
)


def test_valid_frame_counts_are_4k_plus_1():
    assert [n for n in range(0, 30) if is_valid_num_frames(n)] == [1, 5, 9, 13, 17, 21, 25, 29]
    assert not is_valid_num_frames(-3)


def test_floor_4k1_is_largest_valid_count_not_above_n():
    assert [floor_4k1(n) for n in (-5, 0, 1, 2, 4, 5, 8, 9, 80, 81, 84, 85)] == [
        0, 0, 1, 1, 1, 5, 5, 9, 77, 81, 81, 85,
    ]  # fmt: skip
    for n in range(1, 200):
        f = floor_4k1(n)
        assert is_valid_num_frames(f) and f <= n < f + 4


def test_latent_num_frames_follows_the_causal_vae():
    assert latent_num_frames(1) == 1  # an image is one latent frame
    assert latent_num_frames(17) == 5
    assert latent_num_frames(33) == 9
    assert latent_num_frames(DEFAULT_NUM_FRAMES) == 21
    for bad in (0, 2, 4, 80):
        with pytest.raises(ValueError, match="4k\\+1"):
            latent_num_frames(bad)


def test_clip_starts_first_takes_the_leading_frames():
    assert clip_starts(100, 81, "first") == [0]
    assert clip_starts(81, 81, "first") == [0]
    assert clip_starts(80, 81, "first") == []


def test_clip_starts_multi_is_non_overlapping_and_inside_the_shot():
    assert clip_starts(100, 33, "multi") == [0, 33, 66]
    assert clip_starts(98, 33, "multi") == [0, 33]
    assert clip_starts(16, 17, "multi") == []
    for shot_len in range(0, 120, 7):
        starts = clip_starts(shot_len, 17, "multi")
        assert all(b - a >= 17 for a, b in zip(starts, starts[1:], strict=False))
        assert all(s + 17 <= shot_len for s in starts)
        assert len(starts) == shot_len // 17


def test_clip_starts_rejects_bad_arguments():
    with pytest.raises(ValueError):
        clip_starts(100, 80, "first")
    with pytest.raises(ValueError, match="policy"):
        clip_starts(100, 81, "random")  # type: ignore[arg-type]
