"""Probing and decoding generated videos (sama.video.probe, sama.video.decode).

Legend: ``frames_THWC`` = time x height x width x 3 uint8 RGB.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import fsspec
import numpy as np
import pytest

from sama.errors import ErrorKind, SampleError
from sama.media import make_shot_frames, write_video
from sama.video.decode import SEEK_MIN_FRAMES, iter_frames, read_frames
from sama.video.probe import VideoInfo, probe_video


def _all(uri: str, **kw) -> np.ndarray:
    return np.stack(list(iter_frames(uri, **kw)))


def _close(a: np.ndarray, b: np.ndarray, mean: float = 1.0, peak: int = 12) -> bool:
    d = np.abs(a.astype(np.int16) - b.astype(np.int16))
    return a.shape == b.shape and d.mean() <= mean and d.max() <= peak


# ---- probe -------------------------------------------------------------------------------


def test_probe_h264(sample_set):
    v = sample_set["videos"]["landscape"]
    info = probe_video(v["path"])
    assert isinstance(info, VideoInfo)
    assert (info.width, info.height) == tuple(v["size"]) == (96, 64)
    assert info.fps == pytest.approx(24.0)
    assert info.num_frames == v["num_frames"] == 110
    assert info.duration_s == pytest.approx(110 / 24, abs=0.05)
    assert info.codec == "h264" and info.rotation == 0
    assert info.size_bytes == os.path.getsize(v["path"])
    assert info.backend == "decord"  # local + supported codec
    assert info.to_dict()["num_frames"] == 110


@pytest.mark.parametrize(("name", "codec"), [("portrait", "h264"), ("square", "mpeg4")])
def test_probe_other_shapes_and_codecs(sample_set, name, codec):
    v = sample_set["videos"][name]
    info = probe_video(v["path"])
    assert (info.width, info.height) == tuple(v["size"])
    assert info.num_frames == v["num_frames"]
    assert info.codec == codec


def test_probe_av1_in_mkv_counts_packets(sample_set):
    # Matroska stores no frame count: probe demuxes to count. AV1 goes to PyAV (libdav1d).
    v = sample_set["videos"]["av1"]
    info = probe_video(v["path"])
    assert info.codec == "av1"
    assert info.num_frames == v["num_frames"] == 66
    assert (info.width, info.height) == (96, 64)
    assert info.fps == pytest.approx(24.0)
    assert info.duration_s == pytest.approx(66 / 24, abs=0.05)
    assert info.backend == "pyav"


@pytest.mark.parametrize(
    "name", ["zero_byte", "not_a_video", "truncated", "truncated_faststart", "missing"]
)
def test_bad_files_raise_the_right_kind(sample_set, name):
    bad = sample_set["bad"][name]
    with pytest.raises(SampleError) as e:
        probe_video(bad["path"])
    assert e.value.kind == ErrorKind(bad["kind"])
    assert e.value.stage == "probe"
    assert Path(bad["path"]).name in str(e.value)


@pytest.mark.parametrize("name", ["zero_byte", "not_a_video", "truncated", "missing"])
def test_decoding_bad_files_raises_eagerly(sample_set, name):
    bad = sample_set["bad"][name]
    for backend in ("auto", "pyav"):
        with pytest.raises(SampleError) as e:
            iter_frames(bad["path"], backend=backend)  # raises before the first next()
        assert e.value.kind == ErrorKind(bad["kind"])


def test_audio_only_file_is_not_a_video(tmp_path):
    import av

    path = tmp_path / "tone.wav"
    with av.open(str(path), "w") as c:
        s = c.add_stream("pcm_s16le", rate=8000)
        frame = av.AudioFrame.from_ndarray(
            np.zeros((1, 800), np.int16), format="s16", layout="mono"
        )
        frame.sample_rate = 8000
        c.mux(s.encode(frame))
        c.mux(s.encode(None))
    with pytest.raises(SampleError) as e:
        probe_video(str(path))
    assert e.value.kind == ErrorKind.NOT_A_VIDEO


def test_rotation_is_recorded_and_frames_come_out_upright(tmp_path):
    frames_THWC, _ = make_shot_frames([9], size=(96, 64), seed=5)
    path = write_video(tmp_path / "rot.mp4", frames_THWC, rotation=90)
    info = probe_video(str(path))
    assert info.rotation == 90
    assert (info.width, info.height) == (64, 96)  # display size
    upright_THWC = np.rot90(frames_THWC, 1, axes=(1, 2))
    for backend in ("pyav", "decord"):
        out = _all(str(path), backend=backend)
        assert out.shape == (9, 96, 64, 3)
        assert _close(out, upright_THWC, mean=6, peak=255), backend
    small = next(iter_frames(str(path), size=(32, 48), backend="pyav"))
    assert small.shape == (48, 32, 3)


# ---- decoding ----------------------------------------------------------------------------


def test_decord_and_pyav_agree_on_h264(shot_video):
    a = _all(shot_video["path"], backend="pyav")
    b = _all(shot_video["path"], backend="decord")
    assert a.shape == (shot_video["num_frames"], 64, 64, 3) and a.dtype == np.uint8
    assert _close(a, b)
    truth, _ = make_shot_frames(shot_video["shot_lengths"], size=(64, 64), seed=3)
    assert _close(a, truth, mean=8, peak=255)  # lossy codec: only roughly the source


def test_av1_decodes_via_auto_but_not_decord(sample_set):
    v = sample_set["videos"]["av1"]
    frames_THWC = _all(v["path"])
    assert frames_THWC.shape == (66, 64, 96, 3)
    truth, _ = make_shot_frames(v["shot_lengths"], size=(96, 64), seed=3)
    assert _close(frames_THWC, truth, mean=8, peak=255)
    with pytest.raises(SampleError) as e:
        iter_frames(v["path"], backend="decord")
    assert e.value.kind == ErrorKind.UNSUPPORTED_CODEC


@pytest.mark.parametrize("backend", ["auto", "decord", "pyav"])
def test_iter_frames_start_count_semantics(shot_video, backend):
    path, n = shot_video["path"], shot_video["num_frames"]
    full = _all(path, backend="pyav")
    it = iter_frames(path, 10, 5, backend=backend)
    assert isinstance(it, Iterator)  # streamed, not a list
    assert _close(np.stack(list(it)), full[10:15])
    assert _close(_all(path, start=n - 3, backend=backend), full[-3:])  # count=None: to the end
    assert len(list(iter_frames(path, n - 4, 100, backend=backend))) == 4  # stops at the end
    assert list(iter_frames(path, n + 5, 3, backend=backend)) == []
    assert list(iter_frames(path, 0, 0, backend=backend)) == []
    with pytest.raises(ValueError):
        iter_frames(path, -1, backend=backend)


@pytest.mark.parametrize("backend", ["decord", "pyav"])
def test_seeking_reads_the_same_frames_as_decoding_from_the_start(shot_video, backend):
    path, n = shot_video["path"], shot_video["num_frames"]
    full = _all(path, backend=backend)
    for start in (SEEK_MIN_FRAMES, SEEK_MIN_FRAMES + 5, n - 9):  # inside later GOPs (gop=12)
        got = np.stack(list(iter_frames(path, start, 9, backend=backend)))
        np.testing.assert_array_equal(got, full[start : start + 9])


def test_read_frames_any_order_and_too_short(shot_video):
    path, n = shot_video["path"], shot_video["num_frames"]
    full = _all(path, backend="pyav")
    idx = [70, 3, 3, 0, n - 1]
    for backend in ("auto", "pyav"):
        got = read_frames(path, idx, backend=backend)
        assert got.shape == (5, 64, 64, 3)
        assert _close(got, full[idx])
    with pytest.raises(SampleError) as e:
        read_frames(path, [0, n], backend="pyav")
    assert e.value.kind == ErrorKind.TOO_SHORT
    with pytest.raises(ValueError):
        read_frames(path, [])


@pytest.mark.parametrize("backend", ["auto", "pyav"])
def test_downscale_during_decode(shot_video, backend):
    small = np.stack(list(iter_frames(shot_video["path"], 0, 40, size=(32, 16), backend=backend)))
    assert small.shape == (40, 16, 32, 3)
    full = _all(shot_video["path"], count=40, backend="pyav")
    # same content: per-frame mean colour survives the downscale
    assert np.abs(small.mean(axis=(1, 2)) - full.mean(axis=(1, 2))).max() < 6


def test_auto_falls_back_to_pyav_when_decord_fails(sample_set):
    # A faststart mp4 cut at 60%: decord refuses to open it, PyAV decodes the frames present.
    path = sample_set["bad"]["truncated_faststart"]["path"]
    with pytest.raises(SampleError) as e:
        list(iter_frames(path, backend="decord"))
    assert e.value.kind == ErrorKind.DECODE_ERROR
    auto = _all(path, backend="auto")
    pyav = _all(path, backend="pyav")
    assert 10 < len(auto) < 80
    np.testing.assert_array_equal(auto, pyav)


def test_memory_and_file_uris_via_fsspec(sample_set):
    v = sample_set["videos"]["landscape"]
    local = _all(v["path"], backend="pyav")
    data = Path(v["path"]).read_bytes()
    mem = fsspec.filesystem("memory")
    mem.pipe("/sama-test/landscape.mp4", data)
    try:
        info = probe_video("memory://sama-test/landscape.mp4")
        assert info.num_frames == 110 and info.backend == "pyav"
        assert info.size_bytes == len(data)
        got = _all("memory://sama-test/landscape.mp4")  # auto -> PyAV on a file object
        np.testing.assert_array_equal(got, local)
        got = read_frames("/sama-test/landscape.mp4", [5, 50], fs=mem)
        np.testing.assert_array_equal(got, local[[5, 50]])
        with pytest.raises(SampleError) as e:
            probe_video("memory://sama-test/nope.mp4")
        assert e.value.kind == ErrorKind.NOT_FOUND
    finally:
        mem.rm("/sama-test", recursive=True)
    info = probe_video("file://" + v["path"])
    assert info.num_frames == 110 and info.backend == "decord"


def test_av1_through_memory_fs(sample_set):
    v = sample_set["videos"]["av1"]
    mem = fsspec.filesystem("memory")
    mem.pipe("/sama-test-av1/a.mkv", Path(v["path"]).read_bytes())
    try:
        got = np.stack(list(iter_frames("memory://sama-test-av1/a.mkv", 30, 10)))
        np.testing.assert_array_equal(got, _all(v["path"])[30:40])
    finally:
        mem.rm("/sama-test-av1", recursive=True)
