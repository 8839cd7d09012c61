"""Pair alignment (sama.pairs.align): mismatches named, 4k+1 agreement, OpenVE drop-4, images."""

from __future__ import annotations

import io
import uuid

import fsspec
import numpy as np
import pytest
from PIL import Image

from datasets_spec.pairs import PAIRS_V1
from sama.errors import ConfigError, ErrorKind, SampleError
from sama.media import write_image
from sama.pairs.align import (
    AlignConfig,
    ImageInfo,
    align_pair,
    probe_image,
    probe_media,
    read_image,
    usable_frames,
)
from sama.video.probe import VideoInfo


def _video(n: int = 85, fps: float = 24.0, size: tuple[int, int] = (832, 480)) -> VideoInfo:
    w, h = size
    return VideoInfo(
        uri=f"v{n}.mp4",
        width=w,
        height=h,
        fps=fps,
        num_frames=n,
        duration_s=n / fps,
        codec="h264",
        rotation=0,
        size_bytes=1000,
        backend="pyav",
    )


def _image(size: tuple[int, int] = (1024, 768)) -> ImageInfo:
    return ImageInfo(uri="i.png", width=size[0], height=size[1], size_bytes=10)


def _mismatch(source, target, **kw) -> SampleError:
    with pytest.raises(SampleError) as e:
        align_pair(source, target, **kw)
    assert e.value.kind == ErrorKind.MISMATCH and e.value.stage == "align_pair"
    return e.value


def test_a_matching_video_pair_gives_the_plan_and_its_pairs_v1_columns():
    plan = align_pair(_video(85), _video(85))
    assert (plan.media_type, plan.start_frame, plan.num_frames) == ("video", 0, 81)  # F = 81
    assert plan.fps == 24.0 and plan.bucket == (832, 480)
    row = plan.to_row()
    assert set(row) <= set(PAIRS_V1.column_names)
    assert (row["orig_width"], row["bucket_height"]) == (832, 480)


def test_frame_counts_must_agree_after_the_4k1_rule():
    uncapped = AlignConfig(max_frames=0)
    assert align_pair(_video(101), _video(103), cfg=uncapped).num_frames == 101  # both -> 101
    err = _mismatch(_video(100), _video(101), cfg=uncapped)
    assert "source 100 frames, target 101 frames" in err.message and "97 vs 101" in err.message
    err = _mismatch(_video(85), _video(49))
    assert "85 frames" in err.message and "49 frames" in err.message


def test_openve_drop_4_rule_applies_to_both_videos():
    plan = align_pair(_video(85), _video(88), drop_first_frames=4)
    assert (plan.start_frame, plan.num_frames) == (4, 81)  # 81 and 84 frames left -> 81 each
    err = _mismatch(_video(84), _video(85), drop_first_frames=4)
    assert "77 vs 81 after dropping 4" in err.message
    assert usable_frames(85, 4, 81) == 81 and usable_frames(3, 4, 81) == 0
    assert usable_frames(70, 4, 81) == 65


def test_too_few_frames_after_the_drop_is_too_short():
    with pytest.raises(SampleError) as e:
        align_pair(_video(8), _video(8), drop_first_frames=4)
    assert e.value.kind == ErrorKind.TOO_SHORT and "leave 1" in e.value.message


def test_aspect_bucket_and_fps_and_media_type_mismatches_name_both_values():
    err = _mismatch(_video(size=(832, 480)), _video(size=(480, 832)))
    assert "832x480 -> 832x480" in err.message and "480x832 -> 480x832" in err.message
    same_bucket = align_pair(_video(size=(1280, 720)), _video(size=(832, 480)))
    assert same_bucket.bucket == (832, 480) and same_bucket.target_size == (832, 480)
    assert align_pair(_video(fps=24.0), _video(fps=23.976)).num_frames == 81
    err = _mismatch(_video(fps=24.0), _video(fps=25.0))
    assert "24.000" in err.message and "25.000" in err.message
    err = _mismatch(_image(), _video())
    assert "source image, target video" in err.message
    err = _mismatch(_image(), _image(), media_hint="video")
    assert "manifest says video" in err.message


def test_images_are_one_frame_pairs():
    plan = align_pair(_image((1024, 768)), _image((1024, 770)), drop_first_frames=4)
    assert (plan.media_type, plan.start_frame, plan.num_frames, plan.fps) == ("image", 0, 1, None)
    assert plan.bucket == (736, 544)  # 4:3 -> the nearest 480p bucket
    small = AlignConfig(resolution=64)
    assert align_pair(_image((96, 64)), _image((96, 64)), cfg=small).bucket == (96, 64)


def test_align_config_is_validated():
    AlignConfig().validate()
    for bad in (
        AlignConfig(max_frames=80),
        AlignConfig(min_frames=4),
        AlignConfig(max_fps_diff=-1),
    ):
        with pytest.raises(ConfigError):
            bad.validate()


@pytest.fixture
def mem():
    fs = fsspec.filesystem("memory")
    name = f"align-{uuid.uuid4().hex}"
    yield f"memory://{name}"
    if fs.exists(f"/{name}"):
        fs.rm(f"/{name}", recursive=True)


def _put(uri: str, data: bytes) -> str:
    with fsspec.open(uri, "wb") as f:
        f.write(data)
    return uri


def test_read_image_local_and_memory_and_exif(tmp_path, mem):
    rgb = np.zeros((6, 10, 3), np.uint8)
    rgb[:, :5] = (255, 0, 0)
    local = write_image(tmp_path / "a.png", rgb)
    np.testing.assert_array_equal(read_image(str(local)), rgb)
    buf = io.BytesIO()
    Image.fromarray(rgb).convert("L").save(buf, format="PNG")  # greyscale -> RGB
    out = read_image(_put(f"{mem}/g.png", buf.getvalue()))
    assert out.shape == (6, 10, 3) and out.dtype == np.uint8
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated 90 degrees: upright is 6 wide, 10 tall
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", exif=exif)
    assert read_image(_put(f"{mem}/r.jpg", buf.getvalue())).shape == (10, 6, 3)
    info = probe_image(f"{mem}/r.jpg")
    assert (info.width, info.height) == (6, 10) and info.size_bytes == len(buf.getvalue())


@pytest.mark.parametrize(
    ("data", "kind"),
    [
        (None, ErrorKind.NOT_FOUND),
        (b"", ErrorKind.ZERO_BYTE),
        (b"not an image at all" * 5, ErrorKind.NOT_AN_IMAGE),
        ("truncated", ErrorKind.NOT_AN_IMAGE),
    ],
    ids=["missing", "zero_byte", "text", "truncated"],
)
def test_read_image_errors_are_sample_errors(mem, data, kind):
    uri = f"{mem}/x.png"
    if data == "truncated":
        buf = io.BytesIO()
        Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8)).save(
            buf, format="PNG"
        )
        data = buf.getvalue()[: len(buf.getvalue()) // 2]
    if data is not None:
        _put(uri, data)
    with pytest.raises(SampleError) as e:
        read_image(uri)
    assert e.value.kind == kind and e.value.stage == "read_image" and uri in e.value.message


def test_probe_media_picks_image_or_video(shot_video, mem):
    buf = io.BytesIO()
    Image.fromarray(np.zeros((4, 8, 3), np.uint8)).save(buf, format="PNG")
    assert isinstance(probe_media(_put(f"{mem}/a.png", buf.getvalue())), ImageInfo)
    assert isinstance(probe_media(_put(f"{mem}/a.bin", buf.getvalue())), ImageInfo)
    info = probe_media(shot_video["path"])
    assert isinstance(info, VideoInfo) and info.num_frames == shot_video["num_frames"]
    with open(shot_video["path"], "rb") as f:
        unknown = _put(f"{mem}/clip.data", f.read())
    assert isinstance(probe_media(unknown), VideoInfo)  # not an image -> tried as a video
