"""Shot detection on generated videos with known cuts (sama.video.shots)."""

from __future__ import annotations

import dataclasses

import av
import fsspec
import numpy as np
import pytest

from sama.errors import ConfigError, ErrorKind, SampleError
from sama.media import make_shot_frames, write_shot_video, write_video
from sama.video.shots import Shot, ShotConfig, detect_shots, shot_bounds

TOLERANCE = 1  # a detected cut within +-1 frame of a true cut counts as a hit

# (shot lengths, (W, H), seed, per-frame noise amplitude): lengths >= min_shot_frames (15).
CASES = [
    ([30, 45, 20, 60], (96, 64), 0, 0),
    ([25, 25, 25, 25, 25, 25], (64, 64), 1, 0),
    ([50, 17, 33, 40, 22], (128, 72), 2, 0),
    ([40, 24, 36], (64, 96), 3, 10),  # portrait, grainy: encoder noise + per-frame noise
    ([18, 70, 19, 30], (160, 96), 4, 10),
]


def cut_f1(detected: list[int], truth: list[int], tol: int = TOLERANCE) -> tuple[int, int, int]:
    """(true positives, false positives, false negatives), one-to-one matching within ``tol``."""
    unmatched = list(truth)
    tp = 0
    for cut in sorted(detected):
        hit = next((t for t in unmatched if abs(t - cut) <= tol), None)
        if hit is not None:
            unmatched.remove(hit)
            tp += 1
    return tp, len(detected) - tp, len(unmatched)


def _cuts(shots: list[Shot]) -> list[int]:
    return [s.start_frame for s in shots[1:]]


def _write_case(path, lengths, size, seed, noise, codec="libx264") -> list[int]:
    frames_THWC, cuts = make_shot_frames(lengths, size=size, seed=seed)
    if noise:
        rng = np.random.default_rng(seed)
        grain = rng.integers(-noise, noise + 1, size=frames_THWC.shape[:3] + (1,))
        frames_THWC = np.clip(frames_THWC.astype(np.int16) + grain, 0, 255).astype(np.uint8)
    write_video(path, frames_THWC, fps=24, codec=codec)
    return cuts


@pytest.fixture(scope="module")
def cases(tmp_path_factory) -> list[tuple[str, list[int], int]]:
    root = tmp_path_factory.mktemp("shots")
    out = []
    for i, (lengths, size, seed, noise) in enumerate(CASES):
        path = root / f"case{i}.mp4"
        out.append((str(path), _write_case(path, lengths, size, seed, noise), sum(lengths)))
    return out


@pytest.mark.parametrize(
    "cfg",
    [
        ShotConfig(),
        ShotConfig(preset="fast", downscale_width=48),  # exercises the downscaling path
        ShotConfig(preset="accurate"),
        ShotConfig(detector="content"),
        ShotConfig(detector="adaptive"),
    ],
    ids=["fast", "fast-w48", "accurate", "content", "adaptive"],
)
def test_f1_of_detected_cuts(cases, cfg):
    tp = fp = fn = 0
    for path, truth, num_frames in cases:
        shots = detect_shots(path, cfg)
        assert shots[0].start_frame == 0 and shots[-1].end_frame == num_frames
        a, b, c = cut_f1(_cuts(shots), truth)
        tp, fp, fn = tp + a, fp + b, fn + c
    f1 = 2 * tp / (2 * tp + fp + fn)
    print(f"\n{cfg.describe()}: F1={f1:.3f} (tp={tp} fp={fp} fn={fn}) over {len(cases)} videos")
    assert f1 >= 0.95


def test_shots_tile_the_video_with_times(cases):
    path, truth, num_frames = cases[0]
    shots = detect_shots(path)
    assert [s.index for s in shots] == list(range(len(shots)))
    for a, b in zip(shots, shots[1:], strict=False):
        assert a.end_frame == b.start_frame and a.end_s == pytest.approx(b.start_s)
    assert sum(s.num_frames for s in shots) == num_frames
    assert shots[1].start_s == pytest.approx(shots[1].start_frame / 24)
    assert shots[-1].end_s == pytest.approx(num_frames / 24)


def test_av1_is_decoded_with_pyav_not_opencv(tmp_path):
    path = tmp_path / "av1.mkv"
    truth = write_shot_video(path, [30, 25, 35], size=(96, 64), codec="av1")
    with av.open(str(path)) as c:
        assert c.streams.video[0].codec_context.codec.canonical_name == "av1"
    for backend in ("pyav", "auto"):
        shots = detect_shots(str(path), ShotConfig(backend=backend))
        assert cut_f1(_cuts(shots), truth) == (len(truth), 0, 0)
        assert shots[-1].end_frame == 90
    # OpenCV reads AV1 as 0 frames without an error; that must not become "no shots".
    with pytest.raises(SampleError) as e:
        detect_shots(str(path), ShotConfig(backend="opencv"))
    assert e.value.kind == ErrorKind.UNSUPPORTED_CODEC


def test_opencv_backend_reads_h264(cases):
    path, truth, num_frames = cases[2]
    shots = detect_shots(path, ShotConfig(backend="opencv", downscale_width=48))
    assert cut_f1(_cuts(shots), truth) == (len(truth), 0, 0)
    assert shots[-1].end_frame == num_frames


def test_fast_and_accurate_presets_agree(cases, tmp_path):
    # 330 px wide: padded plane rows (line_size > width) and a real downscale at width 256.
    path = tmp_path / "wide.mp4"
    truth = _write_case(path, [30, 22, 41, 27], (330, 186), 5, 6)
    videos = [*cases, (str(path), truth, 120)]
    for path, truth, _ in videos:
        fast = detect_shots(path, ShotConfig(preset="fast"))
        fast48 = detect_shots(path, ShotConfig(preset="fast", downscale_width=48))
        deblocked = detect_shots(path, ShotConfig(preset="fast", skip_loop_filter=False))
        accurate = detect_shots(path, ShotConfig(preset="accurate"))
        assert _cuts(fast) == _cuts(fast48) == _cuts(deblocked) == _cuts(accurate)
        assert cut_f1(_cuts(accurate), truth) == (len(truth), 0, 0)


def test_fast_path_matches_ffmpeg_scaler(tmp_path):
    """The plane-wise area downscale gives the same picture as FFmpeg's scale+convert."""
    from sama.video.detector_input import i420_to_small_bgr as _i420_to_small_bgr

    path = tmp_path / "wide.mp4"
    _write_case(path, [5], (330, 186), 6, 0)
    with av.open(str(path)) as c:
        frame = next(c.decode(video=0))
        assert frame.planes[0].line_size > frame.width  # padded rows are handled
        ours = _i420_to_small_bgr(frame, 256, 144).astype(np.int16)
        ffmpeg = frame.to_ndarray(format="bgr24", width=256, height=144, interpolation="AREA")
    assert ours.shape == (144, 256, 3)
    assert np.abs(ours - ffmpeg).mean() < 4.0


def test_memory_uri_and_explicit_fs(cases):
    path, truth, num_frames = cases[1]
    fs = fsspec.filesystem("memory")
    with open(path, "rb") as f:
        fs.pipe("/shots/case.mp4", f.read())
    try:
        local = detect_shots(path)
        assert _cuts(local) == truth and local[-1].end_frame == num_frames
        assert detect_shots("memory://shots/case.mp4") == local
        assert detect_shots("/shots/case.mp4", fs=fs) == local
        with pytest.raises(ConfigError, match="local files only"):
            detect_shots("memory://shots/case.mp4", ShotConfig(backend="opencv"))
    finally:
        fs.rm("/shots", recursive=True)


def test_bad_inputs_raise_sample_errors(tmp_path, cases):
    truncated = tmp_path / "truncated.mp4"  # moov index at the end: cut in half, cannot open
    with open(cases[0][0], "rb") as f:
        data = f.read()
    truncated.write_bytes(data[: len(data) // 2])
    text = tmp_path / "notes.mp4"
    text.write_text("this is not a video\n" * 50)
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    expected = {
        text: ErrorKind.NOT_A_VIDEO,
        empty: ErrorKind.ZERO_BYTE,
        tmp_path / "missing.mp4": ErrorKind.NOT_FOUND,
        truncated: ErrorKind.TRUNCATED,
    }
    for path, kind in expected.items():
        with pytest.raises(SampleError) as e:
            detect_shots(str(path))
        assert e.value.kind == kind, (path, e.value)
        assert e.value.stage == "detect_shots"


def test_zero_decoded_frames_is_an_error_not_no_shots(tmp_path):
    """A valid container whose H.264 packets are all zeros decodes to nothing: an error row."""
    path = tmp_path / "blank_packets.mkv"
    frame = av.VideoFrame.from_ndarray(np.zeros((64, 64, 3), np.uint8), format="rgb24")
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=24)
        s.width, s.height, s.pix_fmt = 64, 64, "yuv420p"
        packets = [p for _ in range(10) for p in s.encode(frame)] + list(s.encode(None))
        for p in packets:
            blank = av.Packet(bytes(p.size))
            blank.pts, blank.dts, blank.time_base, blank.stream = p.pts, p.dts, p.time_base, s
            c.mux(blank)
    with pytest.raises(SampleError) as e:
        detect_shots(str(path))
    assert e.value.kind == ErrorKind.DECODE_ERROR
    assert "0 frames" in str(e.value)


def test_single_shot_video_is_one_shot(tmp_path):
    path = tmp_path / "one.mp4"
    assert write_shot_video(path, [47], size=(96, 64), fps=25) == []
    for detector in ("transitions", "content", "adaptive"):
        shots = detect_shots(str(path), ShotConfig(detector=detector))
        assert shots == [Shot(0, 0, 47, 0.0, 47 / 25)]


def test_max_shot_frames_splits_long_shots(cases):
    path, truth, num_frames = cases[0]  # shots 30, 45, 20, 60
    shots = detect_shots(path, ShotConfig(max_shot_frames=25))
    assert [s.num_frames for s in shots] == [15, 15, 22, 23, 20, 20, 20, 20]
    assert {30, 75, 95} <= {s.start_frame for s in shots}  # the real cuts are kept
    assert all(s.num_frames <= 25 for s in shots)


def test_shot_bounds():
    assert shot_bounds([], 10) == [0, 10]
    assert shot_bounds([0, 4, 4, 10, 12], 10) == [0, 4, 10]  # out of range and duplicates
    assert shot_bounds([5], 10, max_shot_frames=5) == [0, 5, 10]
    assert shot_bounds([5], 16, max_shot_frames=4) == [0, 2, 5, 9, 12, 16]
    assert shot_bounds([], 11, max_shot_frames=5) == [0, 4, 7, 11]  # equal parts, no tiny tail


@pytest.mark.parametrize(
    "change",
    [
        {"preset": "slow"},
        {"detector": "hash"},
        {"backend": "decord"},
        {"threshold": 0.0},
        {"adaptive_threshold": -1.0},
        {"min_shot_frames": -1},
        {"max_shot_frames": 10},  # below min_shot_frames (15)
        {"downscale_width": 8},
        {"decode_threads": -1},
        {"cut_threshold": 0.0},
        {"jump_ratio": 1.0},
        {"blend_threshold": 300.0},
        {"blend_residual": 0.5},
        {"flat_std": -1.0},
        {"transition_margin": 9},
        {"max_transition_frames": 2},
    ],
)
def test_invalid_config_fails_fast(change, cases):
    cfg = dataclasses.replace(ShotConfig(), **change)
    field = next(iter(change))
    with pytest.raises(ConfigError, match=f"shots.{field}"):
        cfg.validate()
    with pytest.raises(ConfigError):
        detect_shots(cases[0][0], cfg)


def test_describe_names_everything_that_changes_cuts():
    import scenedetect

    fast = ShotConfig().describe()
    assert fast.startswith("sama-transitions-v1(cut=12, jump_ratio=3, blend=16/0.25")
    assert "fast(side=64, skip_loop_filter)" in fast
    assert "cut=20" in ShotConfig(cut_threshold=20).describe()
    assert "fast(width=96)" in ShotConfig(skip_loop_filter=False, downscale_width=96).describe()
    content = ShotConfig(detector="content").describe()
    assert f"scenedetect-{scenedetect.__version__}" in content
    assert "content(threshold=27" in content and "fast(width=256, skip_loop_filter)" in content
    adaptive = ShotConfig(detector="adaptive", preset="accurate", max_shot_frames=100).describe()
    assert "adaptive(adaptive_threshold=3" in adaptive
    assert "accurate" in adaptive and "max_shot_frames=100" in adaptive
