"""Damaged real footage: what still decodes is used, never across the damage (sama.video.salvage).

The files are made from opencv-doc's ``box.mp4`` (a faststart H.264 mp4, 456 frames, keyframes
at 0 and 250) the way files arrive broken: cut off at 58% (decodes ~8.5 s of 15.2 s), 20 kB of
noise written at 50% (plain decoding stopped after 224 frames), and a phone-like rotated video
whose track promises 0.07 s more than its frames.
"""

from __future__ import annotations

import numpy as np
import pytest

from sama.errors import ErrorKind, SampleError
from sama.testing.damaged import overwrite, truncate, write_phone_video
from sama.testing.footage import footage
from sama.video.buckets import resize_crop
from sama.video.decode import iter_frames, iter_indexed_frames
from sama.video.probe import probe_video
from sama.video.shots import detect_boundaries, detect_shots


@pytest.fixture(scope="module")
def damaged(tmp_path_factory):
    root = tmp_path_factory.mktemp("damaged")
    box = footage("box")
    cup = np.stack([resize_crop(f, (160, 96)) for f in iter_frames(str(footage("cup")), 60, 60)])
    return {
        "truncated": str(truncate(box, root / "truncated.mp4", 0.58)),
        "garbage": str(overwrite(box, root / "garbage.mp4", 0.5, 20_000)),
        "phone": str(write_phone_video(root / "phone.mp4", cup, fps=30, rotation=90)),
    }


def test_truncated_file_gives_the_frames_that_decode(damaged):
    path = damaged["truncated"]
    with pytest.raises(SampleError) as e:  # the default keeps the old contract: an error
        probe_video(path)
    assert e.value.kind == ErrorKind.TRUNCATED and "ends early" in str(e.value)
    info = probe_video(path, salvage=True)
    assert info.salvage.startswith("truncated: frames up to 8.4") and "15.184s" in info.salvage
    assert 240 <= info.num_frames <= 260 and info.backend == "pyav"
    pairs = list(iter_indexed_frames(path, backend="pyav"))
    assert [i for i, _ in pairs] == list(range(len(pairs))) and 250 <= len(pairs) <= 257
    detected = detect_boundaries(path)
    assert detected.num_frames == len(pairs) and "salvaged" in detected.salvage
    shots = detect_shots(path)
    assert shots[0].start_frame == 0 and shots[-1].end_frame == len(pairs)


def test_corrupt_middle_is_skipped_and_no_shot_spans_it(damaged):
    path = damaged["garbage"]
    assert probe_video(path).salvage == ""  # the probe reads the head and the tail: both fine
    indices = [i for i, _ in iter_indexed_frames(path, backend="pyav")]
    gaps = [(a + 1, b) for a, b in zip(indices, indices[1:], strict=False) if b != a + 1]
    assert len(gaps) == 1 and gaps[0][0] == 224  # frames 224.. lost up to the next keyframe
    start, end = gaps[0]
    assert 245 <= end <= 252 and len(indices) > 420  # most of the file is used
    detected = detect_boundaries(path)
    assert any(
        b.kind == "damage" and b.start == start and b.end == end for b in detected.boundaries
    )
    for s in detect_shots(path):
        assert s.end_frame <= start or s.start_frame >= end, s


def test_frames_after_the_damage_are_the_intact_files(damaged):
    good = dict(iter_indexed_frames(str(footage("box")), 250, 10, backend="pyav"))
    bad = dict(iter_indexed_frames(damaged["garbage"], 240, 20, backend="pyav", seek=False))
    assert min(bad) == 250  # nothing before the keyframe at 250 is kept
    for i in range(250, 260):
        assert np.abs(bad[i].astype(int) - good[i]).mean() < 1.0


def test_rotated_phone_video_is_not_flagged(damaged):
    path = damaged["phone"]
    for salvage in (False, True):
        info = probe_video(path, salvage=salvage)
        assert info.salvage == "" and info.rotation == 90
        assert (info.width, info.height) == (96, 160) and info.num_frames == 60
    frames = list(iter_frames(path, backend="pyav"))
    assert len(frames) == 60 and frames[0].shape == (160, 96, 3)  # upright
