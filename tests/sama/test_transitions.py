"""Transitions are boundaries, on real footage spliced at known frames (sama.video.transitions).

One labelled video (``sama.testing.transitions``) holds a hard cut, a 12-frame dissolve, fades
through black and white, a wipe, a same-camera jump cut (a second dropped from a shot), a
one-frame white flash and a two-frame brightening. Small (192x108) so it builds in seconds.
"""

from __future__ import annotations

import numpy as np
import pytest

from sama.testing.transitions import Join, Piece, make_labelled_video
from sama.video.boundaries import Boundary, shots_from_boundaries
from sama.video.frames import clip_starts
from sama.video.shots import (
    ShotConfig,
    detect_boundaries,
    detect_shots,
    frame_converter,
    make_boundary_detector,
)

SPEC = [
    Piece("box", 0, 90),
    Join("cut"),
    Piece("cup", 60, 150, flash_at=40, flash_frames=1),
    Join("dissolve", 12),
    Piece("megamind", 2, 97),
    Join("fade_black", 8, 3),
    Piece("box", 120, 250, jump_at=50, jump_frames=30),
    Join("fade_white", 6, 2),
    Piece("bigbuckbunny_clip", 0, 100, flash_at=50, flash_frames=2),
    Join("wipe", 10),
    Piece("carphone", 0, 100),
]
TOL = 2  # frames, each end of a boundary


@pytest.fixture(scope="module")
def labelled(tmp_path_factory):
    return make_labelled_video(tmp_path_factory.mktemp("labelled") / "l.mp4", SPEC, (192, 108))


def _matches(found: list[Boundary], truth: list[tuple[int, int, str]]) -> list[tuple]:
    pairs = []
    for s, e, kind in truth:
        hit = [b for b in found if abs(b.start - s) <= TOL and abs(b.end - e) <= TOL]
        pairs.append((s, e, kind, hit))
    return pairs


def test_the_labelled_truth_is_what_the_spec_says(labelled):
    kinds = [k for _, _, k in labelled.boundaries]
    assert kinds == ["cut", "dissolve", "fade", "jump", "fade", "wipe"]
    assert [e - s for s, e, k in labelled.boundaries if k != "jump"] == [0, 12, 19, 14, 10]
    assert len(labelled.flashes) == 3  # one white frame, two brightened ones
    covered = sum(e - s for s, e in labelled.shots) + sum(e - s for s, e, _ in labelled.boundaries)
    assert covered == labelled.num_frames


def test_every_boundary_found_and_flashes_are_not_cuts(labelled):
    found = detect_boundaries(labelled.path).boundaries
    for s, e, kind, hit in _matches(found, labelled.boundaries):
        assert len(hit) == 1, f"{kind} [{s}, {e}) not found once in {found}"
    assert len(found) == len(labelled.boundaries), found
    for f in labelled.flashes:
        assert not any(b.start - 3 <= f <= b.end + 3 for b in found), (f, found)
    kinds = {k: next(b.kind for b in hit) for _, _, k, hit in _matches(found, labelled.boundaries)}
    assert kinds == {"cut": "cut", "dissolve": "dissolve", "fade": "fade", "jump": "jump",
                     "wipe": "wipe"}  # fmt: skip


def test_transition_frames_belong_to_no_shot_and_no_clip_crosses(labelled):
    shots = detect_shots(labelled.path)
    in_shots = {f for s in shots for f in range(s.start_frame, s.end_frame)}
    for s, e, kind in labelled.boundaries:
        assert not in_shots & set(range(s, e)), f"{kind} frames [{s}, {e}) are in a shot"
    clips = [(s.start_frame + st, s.start_frame + st + 17) for s in shots
             for st in clip_starts(s.num_frames, 17, "multi")]  # fmt: skip
    assert len(clips) >= 25
    for a, b in clips:
        for s, e, kind in labelled.boundaries:
            crosses = a < e and b > s if e > s else a < s < b
            assert not crosses, f"clip [{a}, {b}) crosses the {kind} at [{s}, {e})"


def test_streaming_contract_order_lag_and_same_shots(labelled):
    """Frames pushed one by one: boundaries come in order, never overlap, each by push(end - 1 +
    lag); the shots they give are detect_shots' (the single-pass cutter's guarantee)."""
    import av

    cfg = ShotConfig()
    detector, convert = make_boundary_detector(cfg), frame_converter(cfg)
    got, n = [], 0
    with av.open(labelled.path) as container:
        stream = container.streams.video[0]
        stream.codec_context.options = {"skip_loop_filter": "all"}
        for n, frame in enumerate(container.decode(stream), start=1):
            for b in detector.push(n - 1, convert(frame)):
                assert n - 1 <= b.end - 1 + detector.lag, (b, n - 1, detector.lag)
                got.append(b)
    got += detector.finish(n)
    assert all(a.end <= b.start for a, b in zip(got, got[1:], strict=False)), got
    spans = shots_from_boundaries(got, n)
    assert spans == [(s.start_frame, s.end_frame) for s in detect_shots(labelled.path)]


def test_a_gap_in_the_indices_is_damage_and_no_test_spans_it(labelled):
    import av

    cfg = ShotConfig()
    detector, convert = make_boundary_detector(cfg), frame_converter(cfg)
    got = []
    with av.open(labelled.path) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if 40 <= i < 47:
                continue  # lost to damage, in the middle of the first shot
            got += detector.push(i, convert(frame))
            if i == 120:
                break
    got += detector.finish(121)
    assert Boundary(40, 47, "damage") in got
    assert not [b for b in got if b.kind != "damage" and b.start < 88], got  # first cut at 90


@pytest.mark.parametrize("detector", ["content", "adaptive"])
def test_scenedetect_detectors_keep_the_same_contract(labelled, detector):
    found = detect_boundaries(labelled.path, ShotConfig(detector=detector)).boundaries
    assert found and all(b.kind == "cut" and b.start == b.end for b in found)
    assert any(abs(b.start - labelled.boundaries[0][0]) <= 1 for b in found)  # the hard cut


def test_thumbnail_input_and_full_frames_agree(labelled):
    fast = detect_boundaries(labelled.path).boundaries
    accurate = detect_boundaries(labelled.path, ShotConfig(preset="accurate")).boundaries
    assert len(fast) == len(accurate)
    for a, b in zip(fast, accurate, strict=True):
        assert a.kind == b.kind and abs(a.start - b.start) <= 1 and abs(a.end - b.end) <= 1


def test_push_out_of_order_is_refused():
    detector = make_boundary_detector(ShotConfig())
    frame = np.zeros((36, 64, 3), np.uint8)
    detector.push(0, frame)
    with pytest.raises(ValueError, match="in order"):
        detector.push(0, frame)
