"""The demo pair set (sama.pairs.demo): its truth is what manifest, probe and align report."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from sama.errors import SampleError
from sama.pairs.align import align_pair, probe_media, read_image
from sama.pairs.demo import RED, make_pair_set, scene_frames
from sama.pairs.manifest import BadRow, PairItem, PairManifestConfig, read_pairs
from sama.video.decode import read_frames


@pytest.fixture(scope="module")
def pair_set(tmp_path_factory) -> dict:
    return make_pair_set(tmp_path_factory.mktemp("pairs"))


def _outcome(item: PairItem) -> dict:
    """What the pair build would conclude about one item: a plan or an error."""
    try:
        source = probe_media(item.source_uri, item.media_type)
        target = probe_media(item.target_uri, item.media_type)
        plan = align_pair(source, target, drop_first_frames=item.drop_first_frames)
    except SampleError as e:
        return {"error": e.kind.value, "stage": e.stage}
    d = plan.to_dict()
    return {
        "expected": {
            "media_type": d["media_type"],
            "num_frames": d["num_frames"],
            "start_frame": d["start_frame"],
            "fps": d["fps"],
            "source_size": list(d["source_size"]),
            "bucket": list(d["bucket"]),
        }
    }


def test_truth_matches_manifest_probe_and_align(pair_set):
    truth = pair_set["pairs"]
    items = read_pairs(PairManifestConfig(uri=pair_set["manifest"]))
    assert len(items) == len(truth) == 14
    seen = set()
    for item in items:
        if isinstance(item, BadRow):
            assert truth[item.item_id]["error"] == "bad_manifest_row", item.message
            seen.add(item.item_id)
            continue
        want = truth[item.pair_id]
        seen.add(item.pair_id)
        assert item.source_uri == want["source_uri"] and item.target_uri == want["target_uri"]
        got = _outcome(item)
        keys = ("expected",) if "expected" in want else ("error", "stage")
        assert {k: got.get(k) for k in keys} == {k: want[k] for k in keys}, item.pair_id
    assert seen == set(truth)
    good = [p for p in truth.values() if "expected" in p]
    assert {p["expected"]["media_type"] for p in good} == {"image", "video"} and len(good) == 6


def test_the_edits_are_what_the_instructions_say(pair_set):
    pairs = pair_set["pairs"]

    def first_frame(uri: str) -> np.ndarray:
        return read_image(uri) if uri.endswith(".png") else read_frames(uri, [0])[0]

    def red(rgb: np.ndarray) -> np.ndarray:
        return (rgb[..., 0] > 150) & (rgb[..., 1] < 90) & (rgb[..., 2] < 90)

    for pid in ("video_recolor", "image_recolor"):
        src, tgt = (first_frame(pairs[pid][k]) for k in ("source_uri", "target_uri"))
        mask = red(src)
        assert mask.sum() > 50 and not red(tgt).any()
        assert tgt[mask][:, 2].mean() > 150 > tgt[mask][:, 0].mean()  # now blue
    src, tgt = (first_frame(pairs["video_remove"][k]) for k in ("source_uri", "target_uri"))
    assert red(src).sum() > 50 and red(tgt).sum() == 0
    src, tgt = (first_frame(pairs["video_add"][k]) for k in ("source_uri", "target_uri"))
    green = (tgt[..., 1] > 150) & (tgt[..., 0] < 100)
    assert green[:16, :16].sum() > 20 and not ((src[..., 1] > 150) & (src[..., 0] < 100)).any()


def test_files_manifest_and_truth_on_disk(pair_set):
    root = Path(pair_set["root"])
    on_disk = json.loads(Path(pair_set["truth"]).read_text())
    assert on_disk == json.loads(json.dumps(pair_set))
    rows = [json.loads(line) for line in Path(pair_set["manifest"]).read_text().splitlines()]
    assert [r["id"] for r in rows] == list(pair_set["pairs"])
    assert all(not r["source"].startswith("/") for r in rows)  # relative to the manifest
    assert (root / "bad" / "zero_byte.mp4").stat().st_size == 0
    assert not (root / "videos" / "missing.mp4").exists()
    a = scene_frames(3, (96, 64), seed=1)
    np.testing.assert_array_equal(a, scene_frames(3, (96, 64), seed=1))
    assert (a == np.array(RED, np.uint8)).all(axis=-1).any()
