"""Boundaries as frame ranges: merging, the shots between them, PySceneDetect in the contract."""

from __future__ import annotations

import numpy as np
import pytest

from sama.video.boundaries import (
    Boundary,
    SceneDetectBoundaries,
    merge_boundaries,
    shots_from_boundaries,
)


def test_merge_keeps_order_and_the_kind_that_says_more():
    got = merge_boundaries(
        [Boundary(30, 30, "cut"), Boundary(10, 20, "dissolve"), Boundary(21, 21, "jump")], gap=2
    )
    assert got == [Boundary(10, 21, "dissolve"), Boundary(30, 30, "cut")]
    assert merge_boundaries([Boundary(5, 9, "fade"), Boundary(8, 12, "damage")]) == [
        Boundary(5, 12, "damage")
    ]


def test_shots_between_boundaries():
    bs = [Boundary(0, 4, "fade"), Boundary(30, 30, "cut"), Boundary(50, 62, "dissolve")]
    assert shots_from_boundaries(bs, 100) == [(4, 30), (30, 50), (62, 100)]
    assert shots_from_boundaries([], 10) == [(0, 10)]
    assert shots_from_boundaries([Boundary(0, 10, "fade")], 10) == []
    # split long shots into near-equal parts, transitions still excluded
    assert shots_from_boundaries([Boundary(40, 45, "fade")], 85, max_shot_frames=20) == [
        (0, 20), (20, 40), (45, 65), (65, 85)
    ]  # fmt: skip


def test_a_boundary_is_a_frame_range():
    with pytest.raises(ValueError):
        Boundary(5, 4, "cut")
    assert Boundary(3, 9, "dissolve").num_frames == 6


class _Cuts:
    """A stand-in PySceneDetect detector that reports cut ``c`` when frame ``c + delay`` comes."""

    def __init__(self, cuts, delay):
        self.cuts, self.delay = cuts, delay

    def process_frame(self, tc, frame):
        from types import SimpleNamespace

        return [SimpleNamespace(frame_num=c) for c in self.cuts if c + self.delay == tc.frame_num]

    def post_process(self, tc):
        from types import SimpleNamespace

        return [SimpleNamespace(frame_num=c) for c in self.cuts if c + self.delay >= tc.frame_num]


@pytest.mark.parametrize("delay", [0, 3, 20])  # PySceneDetect: up to min_scene_len + 2
def test_scenedetect_wrapper_orders_late_cuts_and_damage(delay):
    frame = np.zeros((8, 8, 3), np.uint8)
    det = SceneDetectBoundaries(_Cuts([10, 60], delay), 25, min_scene_len=15)
    got = []
    for i in [*range(0, 40), *range(45, 80)]:  # frames 40-44 lost
        for b in det.push(i, frame):
            assert b.end - 1 + det.lag >= i
            got.append(b)
    got += det.finish(80)
    assert got == [Boundary(10, 10, "cut"), Boundary(40, 45, "damage"), Boundary(60, 60, "cut")]
