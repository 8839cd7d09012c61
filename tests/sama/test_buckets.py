"""Aspect buckets and cover-resize + centre-crop (SAMA.md section 1)."""

from __future__ import annotations

import numpy as np
import pytest

from sama.video.buckets import (
    BUCKETS_480P,
    buckets_for,
    nearest_bucket,
    resize_crop,
    resize_crop_plan,
)

PAPER_TABLE = (
    "896x448, 832x480, 768x512, 736x544, 704x576, 672x608, 640x640, 608x672, "
    "576x704, 544x736, 512x768, 512x800, 480x832, 448x864, 448x896"
)


def test_480p_is_exactly_the_paper_table():
    expected = tuple(tuple(int(v) for v in b.split("x")) for b in PAPER_TABLE.split(", "))
    assert len(BUCKETS_480P) == 15
    assert expected == BUCKETS_480P
    assert buckets_for(480) == expected
    assert buckets_for() == expected


@pytest.mark.parametrize("resolution", [64, 96, 128, 240, 720])
def test_scaled_buckets_are_multiples_of_16_and_unique(resolution):
    buckets = buckets_for(resolution)
    assert len(set(buckets)) == len(buckets) >= 3
    for w, h in buckets:
        assert w % 16 == 0 and h % 16 == 0 and w >= 16 and h >= 16
    # the first (widest) bucket keeps roughly the paper's 2:1 aspect
    w, h = buckets[0]
    assert 1.4 <= w / h <= 2.6


def test_buckets_for_rounds_to_the_given_multiple():
    assert buckets_for(240, multiple=8)[0] == (448, 224)
    assert all(w % 32 == 0 and h % 32 == 0 for w, h in buckets_for(480, multiple=32))
    with pytest.raises(ValueError):
        buckets_for(0)


@pytest.mark.parametrize(
    ("src", "bucket"),
    [
        ((1920, 1080), (832, 480)),
        ((1280, 720), (832, 480)),
        ((1080, 1920), (480, 832)),
        ((1000, 1000), (640, 640)),
        ((2560, 1080), (896, 448)),  # 21:9 -> the widest bucket
        ((640, 480), (736, 544)),  # 4:3 = 1.333 vs 736/544 = 1.353
        ((720, 1280), (480, 832)),
    ],
)
def test_nearest_bucket_by_log_aspect(src, bucket):
    assert nearest_bucket(*src, BUCKETS_480P) == bucket


def test_nearest_bucket_is_symmetric_in_log_space():
    # Every bucket maps to itself; a transposed landscape input goes to the transposed bucket
    # when that exists in the table.
    for w, h in BUCKETS_480P:
        assert nearest_bucket(w, h) == (w, h)
        if (h, w) in BUCKETS_480P:
            assert nearest_bucket(h * 3, w * 3) == (h, w)


def test_resize_crop_plan_covers_then_centres():
    plan = resize_crop_plan(1920, 1080, 832, 480)
    rw, rh = plan.resized
    assert rw >= 832 and rh >= 480 and (rw == 832 or rh == 480)
    x0, y0, x1, y1 = plan.box
    assert (x1 - x0, y1 - y0) == (832, 480)
    assert abs(x0 - (rw - x1)) <= 1 and abs(y0 - (rh - y1)) <= 1
    assert resize_crop_plan(640, 640, 640, 640).box == (0, 0, 640, 640)


def test_resize_crop_shape_dtype_and_centre_crop():
    # 4 frames of 40x20 (W x H); a 20x20 square in the middle is white, the sides black.
    frames = np.zeros((4, 20, 40, 3), np.uint8)
    frames[:, :, 10:30] = 255
    out = resize_crop(frames, (16, 16))  # square target: scale 0.8 -> 32x16, crop x in [8, 24)
    assert out.shape == (4, 16, 16, 3) and out.dtype == np.uint8
    # the centre crop keeps the white middle; the black sides were cut away
    assert out[:, :, 1:-1].min() >= 200
    # a landscape bucket keeps part of the black sides, left and right symmetrically
    wide = resize_crop(frames, (32, 16))
    assert wide.shape == (4, 16, 32, 3)
    assert wide[:, :, 0].max() < 60 and wide[:, :, -1].max() < 60
    assert wide[:, :, 16].min() > 200


def test_resize_crop_upscales_and_accepts_single_images():
    img = np.arange(8 * 8 * 3, dtype=np.uint8).reshape(8, 8, 3)
    out = resize_crop(img, (16, 32))
    assert out.shape == (32, 16, 3)
    same = resize_crop(img[None], (8, 8))
    np.testing.assert_array_equal(same[0], img)
