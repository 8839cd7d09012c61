"""The frames of an aligned pair (sama.pairs.frames): same frames of both sides, the drop honoured,
images as 1 frame, a video that ends early a ``truncated`` error.

Legend: ``frames_THWC`` = time x height x width x 3, uint8 RGB.
"""

from __future__ import annotations

import numpy as np
import pytest

from sama.errors import ErrorKind, SampleError
from sama.media import write_image, write_video
from sama.pairs.align import AlignConfig, align_pair, probe_media
from sama.pairs.demo import scene_frames
from sama.pairs.frames import load_pair_frames, load_side
from sama.video.buckets import resize_crop
from sama.video.decode import read_frames


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("pair_frames")
    src, tgt = root / "src.mp4", root / "tgt.mp4"
    write_video(src, scene_frames(25, (96, 64), 1), fps=24, gop=24)
    write_video(tgt, scene_frames(25, (96, 64), 1, square=None), fps=24, gop=24)
    write_image(root / "a.png", scene_frames(1, (80, 60), 2)[0])
    write_image(root / "b.png", scene_frames(1, (80, 60), 2, square=None)[0])
    return {"src": str(src), "tgt": str(tgt), "a": str(root / "a.png"), "b": str(root / "b.png")}


def test_video_pair_takes_the_same_frames_after_the_drop(media):
    cfg = AlignConfig(resolution=64, max_frames=17)
    infos = probe_media(media["src"]), probe_media(media["tgt"])
    plan = align_pair(*infos, drop_first_frames=4, cfg=cfg)  # OpenVE-3M: drop 4 of both
    assert (plan.start_frame, plan.num_frames, plan.bucket) == (4, 17, (96, 64))
    src_THWC, tgt_THWC = load_pair_frames(media["src"], media["tgt"], plan, infos)
    assert src_THWC.shape == tgt_THWC.shape == (17, 64, 96, 3)
    for uri, got_THWC in ((media["src"], src_THWC), (media["tgt"], tgt_THWC)):
        want_THWC = resize_crop(read_frames(uri, range(4, 21)), (96, 64))
        assert np.array_equal(got_THWC, want_THWC)
    assert not np.array_equal(src_THWC, tgt_THWC)  # the edit (square removed) is there


def test_image_pair_is_one_frame_in_its_bucket(media):
    plan = align_pair(probe_media(media["a"]), probe_media(media["b"]),
                      cfg=AlignConfig(resolution=64))  # fmt: skip
    src_THWC, tgt_THWC = load_pair_frames(media["a"], media["b"], plan)
    assert src_THWC.shape == tgt_THWC.shape == (1, *plan.bucket[::-1], 3)


def test_a_video_that_ends_early_is_truncated(media):
    plan = align_pair(probe_media(media["src"]), probe_media(media["tgt"]),
                      cfg=AlignConfig(resolution=64, max_frames=0))  # fmt: skip
    longer = type(plan)(**{**plan.to_dict(), "start_frame": 4})  # 25 frames from frame 4
    with pytest.raises(SampleError) as e:
        load_side(media["src"], longer)
    assert e.value.kind is ErrorKind.TRUNCATED and "ended after 21 of the 25" in e.value.message
