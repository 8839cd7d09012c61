"""The sample-media generator (sama.media): known cuts, real codecs, bad files of known kinds."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from sama.errors import ErrorKind
from sama.media import (
    make_sample_set,
    make_shot_frames,
    pick_encoder,
    write_image,
    write_shot_video,
    write_video,
)
from sama.video.probe import probe_video


def _hsv_deltas(frames_THWC: np.ndarray) -> np.ndarray:
    """Mean |HSV difference| between consecutive frames (what a content detector scores)."""
    hsv = np.stack([cv2.cvtColor(f, cv2.COLOR_RGB2HSV) for f in frames_THWC]).astype(np.int16)
    return np.abs(np.diff(hsv, axis=0)).mean(axis=(1, 2, 3))


def _detected_cuts(path: str) -> list[int]:
    from scenedetect import ContentDetector, detect

    scenes = detect(path, ContentDetector(), backend="pyav")
    return [start.frame_num for start, _ in scenes[1:]]


@pytest.mark.parametrize("size", [(96, 64), (64, 64), (64, 96), (32, 32)])
@pytest.mark.parametrize("seed", [0, 1, 7])
def test_shots_are_separated_and_frames_within_a_shot_move(size, seed):
    frames_THWC, cuts = make_shot_frames([20, 17, 25, 18], size=size, seed=seed)
    assert frames_THWC.shape == (80, size[1], size[0], 3) and frames_THWC.dtype == np.uint8
    assert cuts == [20, 37, 62]
    d = _hsv_deltas(frames_THWC)
    at_cut = np.zeros(len(d), bool)
    at_cut[np.array(cuts) - 1] = True  # d[i] compares frame i+1 with frame i
    assert d[at_cut].min() > 40  # ContentDetector's default threshold is 27
    assert d[~at_cut].max() < 8
    assert (d[~at_cut] > 0).all()  # the square moves: no two frames of a shot are identical


def test_make_shot_frames_is_deterministic_per_seed():
    a, _ = make_shot_frames([5, 5], size=(32, 32), seed=4)
    b, _ = make_shot_frames([5, 5], size=(32, 32), seed=4)
    c, _ = make_shot_frames([5, 5], size=(32, 32), seed=5)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    with pytest.raises(ValueError):
        make_shot_frames([5, 0])


def test_content_detector_finds_exactly_the_cuts(shot_video, sample_set):
    assert shot_video["cuts"] == [30, 66]
    assert _detected_cuts(shot_video["path"]) == shot_video["cuts"]
    for name, video in sample_set["videos"].items():
        assert _detected_cuts(video["path"]) == video["cuts"], name


def test_write_video_codecs(tmp_path):
    frames_THWC, _ = make_shot_frames([6], size=(48, 32))
    assert pick_encoder("av1") in ("libaom-av1", "libsvtav1", "librav1e")
    assert pick_encoder("libaom-av1") == pick_encoder("av1")  # alias to what is installed
    for codec, ext, canonical in [
        ("libx264", "mp4", "h264"),
        ("mpeg4", "avi", "mpeg4"),
        ("av1", "mkv", "av1"),
    ]:
        path = write_video(tmp_path / f"v.{ext}", frames_THWC, fps=12, codec=codec)
        info = probe_video(str(path))
        assert (info.codec, info.num_frames, info.fps) == (canonical, 6, 12.0)
        assert (info.width, info.height) == (48, 32)


def test_write_video_rejects_bad_input(tmp_path):
    with pytest.raises(ValueError, match="even"):
        write_video(tmp_path / "odd.mp4", np.zeros((2, 33, 48, 3), np.uint8))
    with pytest.raises(ValueError, match="T x H x W x 3"):
        write_video(tmp_path / "gray.mp4", np.zeros((2, 32, 48), np.uint8))
    with pytest.raises(ValueError, match="no encoder"):
        write_video(tmp_path / "x.mp4", np.zeros((2, 32, 48, 3), np.uint8), codec="nosuchcodec")


def test_write_shot_video_returns_cuts(tmp_path):
    cuts = write_shot_video(tmp_path / "s.mp4", [18, 18, 18], size=(64, 64))
    assert cuts == [18, 36]
    assert probe_video(str(tmp_path / "s.mp4")).num_frames == 54


def test_write_image_round_trips_png(tmp_path):
    from PIL import Image

    rgb = make_shot_frames([1], size=(40, 24), seed=2)[0][0]
    path = write_image(tmp_path / "sub" / "img.png", rgb)
    np.testing.assert_array_equal(np.asarray(Image.open(path).convert("RGB")), rgb)


def test_sample_set_contents(sample_set, sample_dir):
    assert sample_dir.is_dir() and Path(sample_set["manifest"]).parent == sample_dir
    videos = sample_set["videos"]
    assert {"landscape", "portrait", "square", "av1"} <= set(videos)
    aspects = {name: v["size"][0] / v["size"][1] for name, v in videos.items()}
    assert aspects["landscape"] > 1.2 and aspects["portrait"] < 0.8
    assert 0.9 < aspects["square"] < 1.1
    for name, v in videos.items():
        assert min(v["shot_lengths"]) >= 17, name  # every shot holds a 17-frame clip
        assert v["cuts"] == list(np.cumsum(v["shot_lengths"])[:-1]), name
        info = probe_video(v["path"])
        assert info.num_frames == v["num_frames"], name
        assert (info.width, info.height) == tuple(v["size"]), name
    assert probe_video(videos["av1"]["path"]).codec == "av1"
    assert any(max(v["shot_lengths"]) >= 33 for v in videos.values())
    for image in sample_set["images"].values():
        assert Path(image["path"]).stat().st_size > 0
    kinds = {b["kind"] for b in sample_set["bad"].values()}
    assert {
        ErrorKind.ZERO_BYTE,
        ErrorKind.NOT_A_VIDEO,
        ErrorKind.TRUNCATED,
        ErrorKind.NOT_FOUND,
    } <= kinds
    assert json.loads((sample_dir / "truth.json").read_text()) == json.loads(json.dumps(sample_set))


def test_sample_set_manifest(sample_set):
    rows = [json.loads(line) for line in Path(sample_set["manifest"]).read_text().splitlines()]
    assert all(set(r) == {"id", "video", "caption"} for r in rows)
    assert len({r["id"] for r in rows}) == len(rows)
    paths = {r["video"] for r in rows}
    assert {v["path"] for v in sample_set["videos"].values()} <= paths
    assert {b["path"] for b in sample_set["bad"].values()} <= paths  # bad inputs are listed too
    assert all(Path(p).is_absolute() for p in paths)


def test_make_sample_set_is_fast_and_sized(tmp_path):
    import time

    t0 = time.perf_counter()
    out = make_sample_set(tmp_path / "s", size=(64, 64))
    assert time.perf_counter() - t0 < 10
    assert out["videos"]["landscape"]["size"] == [64, 64]
    assert out["videos"]["square"]["size"] == [64, 64]
