"""Corpus presets (sama.pairs.presets): each maps rows shaped like its published layout."""

from __future__ import annotations

import io
import json
import tarfile
import uuid

import fsspec
import numpy as np
import pytest

from sama.errors import ConfigError
from sama.pairs.align import read_image
from sama.pairs.manifest import BadRow, PairColumns, PairItem, PairManifestConfig, read_pairs
from sama.pairs.presets import get_preset, list_presets

ALL = {
    "openve-3m",
    "reco-data",
    "ditto-1m",
    "ditto-1m-metadata",
    "nhr-edit",
    "pico-banana-400k",
    "gpt-image-edit",
    "x2edit",
}


@pytest.fixture
def mem():
    fs = fsspec.filesystem("memory")
    name = f"presets-{uuid.uuid4().hex}"
    yield f"memory://{name}"
    if fs.exists(f"/{name}"):
        fs.rm(f"/{name}", recursive=True)


def _put(uri: str, data: bytes | str) -> str:
    with fsspec.open(uri, "wb") as f:
        f.write(data.encode() if isinstance(data, str) else data)
    return uri


def _path(uri: str) -> str:
    return fsspec.core.url_to_fs(uri)[1]


def _read(uri: str, preset: str, **kw) -> list:
    return read_pairs(PairManifestConfig(uri=uri, preset=preset, **kw))


def test_presets_are_listed_documented_and_cited():
    assert set(list_presets()) == ALL
    for name in list_presets():
        p = get_preset(name)
        assert p.corpus.split("-")[0].lower() in p.doc.lower().replace("-", "")
        assert p.sources, name
        assert {"source", "target", "instruction"} <= set(p.columns)
        if p.assumed:  # undocumented fields are flagged, not invented silently
            assert "ASSUMED" in p.doc, name
    assert get_preset("OpenVE").name == "openve-3m"
    assert get_preset("gpt_image_edit_1.5m").name == "gpt-image-edit"
    with pytest.raises(ConfigError, match="known presets: \\['ditto-1m'"):
        get_preset("magicbrush")


def test_openve_3m_category_csvs_and_the_drop_4_rule(mem):
    header = "original_video,video,prompt,edit_type\n"
    _put(
        f"{mem}/OpenVE-3M/local_change.csv",
        header + "local_change/0001_src.mp4,local_change/0001_edit.mp4,"
        '"Replace the cup with a red mug, keep the hand motion.",local_change\n',
    )
    _put(
        f"{mem}/OpenVE-3M/global_style.csv",
        header + "global_style/0002_src.mp4,global_style/0002_edit.mp4,Make it Ghibli,style\n",
    )
    items = _read(f"{mem}/OpenVE-3M/*.csv", "openve-3m")
    assert [i.corpus for i in items] == ["OpenVE-3M"] * 2
    g, loc = items  # sorted: global_style.csv first
    assert _path(loc.source_uri).endswith("/OpenVE-3M/local_change/0001_src.mp4")
    assert _path(loc.target_uri).endswith("/OpenVE-3M/local_change/0001_edit.mp4")
    assert loc.instruction.startswith("Replace the cup") and loc.media_type == "video"
    assert loc.drop_first_frames == g.drop_first_frames == 4  # SAMA.md section 4
    assert loc.metadata == {"edit_type": "local_change"}
    kept = _read(
        f"{mem}/OpenVE-3M/*.csv",
        "openve-3m",
        drop_first_frames=0,
        base_uri="/data/OpenVE-3M/videos",
    )
    assert kept[0].drop_first_frames == 0
    assert kept[0].source_uri == "/data/OpenVE-3M/videos/global_style/0002_src.mp4"


def test_reco_data_task_jsons_resolve_against_the_dataset_root(mem):
    for task in ("add", "replace"):
        _put(
            f"{mem}/ReCo-Data/{task}/{task}_data_configs.json",
            json.dumps(
                [
                    {
                        "src_video": f"{task}/src_videos/v1.mp4",
                        "tar_video": f"{task}/tar_videos/v1.mp4",
                        "instruction_final_refine": f"{task.title()} a lamp on the table.",
                        "task_name": task,
                    }
                ]
            ),
        )
    items = _read(f"{mem}/ReCo-Data/*/*_data_configs.json", "reco-data")
    assert [i.instruction for i in items] == [
        "Add a lamp on the table.",
        "Replace a lamp on the table.",
    ]
    assert _path(items[1].source_uri) == _path(f"{mem}/ReCo-Data/replace/src_videos/v1.mp4")
    assert _path(items[1].target_uri) == _path(f"{mem}/ReCo-Data/replace/tar_videos/v1.mp4")
    assert items[0].metadata == {"task_name": "add"} and items[0].drop_first_frames == 0


def test_ditto_1m_diffsynth_csv_and_training_metadata(mem):
    _put(
        f"{mem}/Ditto-1M/csvs_for_DiffSynth/global_style.csv",
        "video,vace_video,prompt\nglobal_style1/a.mp4,source/a.mp4,Turn it into an oil painting\n",
    )
    (item,) = _read(f"{mem}/Ditto-1M/csvs_for_DiffSynth/global_style.csv", "ditto-1m")
    assert _path(item.source_uri) == _path(f"{mem}/Ditto-1M/videos/source/a.mp4")
    assert _path(item.target_uri) == _path(f"{mem}/Ditto-1M/videos/global_style1/a.mp4")
    assert item.corpus == "Ditto-1M" and item.media_type == "video"
    _put(
        f"{mem}/Ditto-1M/training_metadata/local.json",
        json.dumps(
            [
                {
                    "source_path": "videos/source/b.mp4",
                    "instruction": "Remove the dog",
                    "edited_path": "videos/local/b.mp4",
                }
            ]
        ),
    )
    (meta,) = _read(f"{mem}/Ditto-1M/training_metadata/local.json", "ditto-1m-metadata")
    assert _path(meta.target_uri) == _path(f"{mem}/Ditto-1M/videos/local/b.mp4")
    assert meta.instruction == "Remove the dog"


def test_nhr_edit_metadata_jsonl(mem):
    row = {
        "sample_id": "nhr_000123",
        "source_file_name": "images/00/image_123_original.jpg",
        "edited_file_name": "images/00/image_123_edited_0.jpg",
        "edit_instruction": "Give the sky a pink sunset glow.",
        "augmented_instructions": ["Make the sky pink"],
        "category": "Color",
        "kind": "edit",
        "style": "photo",
        "img_width": 1024,
        "img_height": 768,
    }
    uri = _put(f"{mem}/NHR-Edit/train/metadata.jsonl", json.dumps(row) + "\n")
    (item,) = _read(uri, "nhr-edit")
    assert item.pair_id == "nhr_000123" and item.media_type == "image"
    assert _path(item.source_uri) == _path(f"{mem}/NHR-Edit/train/images/00/image_123_original.jpg")
    assert item.metadata["category"] == "Color" and item.metadata["img_width"] == 1024
    assert "edit_instruction" not in item.metadata


def test_pico_banana_sft_jsonl_prefers_local_sources(mem):
    flickr = "https://c1.staticflickr.com/8/7404/9423051591_cb1bf5c5e1_o.jpg"
    rows = [
        {
            "open_image_input_url": flickr,
            "text": "Remove the red flag and its pole.",
            "output_image": "images/positive-edit/1.png",
            "edit_type": "Remove an existing object",
            "summarized_text": "Flag removed.",
        },
        {
            "open_image_input_url": flickr,
            "local_input_image": "/oi/train_0/0000e2205e.jpg",
            "text": "Make it snow.",
            "output_image": "images/positive-edit/2.png",
            "edit_type": "Weather",
            "summarized_text": "Snow.",
        },
    ]
    uri = _put(f"{mem}/pico/sft.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    a, b = _read(uri, "pico-banana-400k")
    assert a.source_uri == flickr and b.source_uri == "/oi/train_0/0000e2205e.jpg"
    assert _path(a.target_uri) == _path(f"{mem}/pico/images/positive-edit/1.png")
    assert a.instruction == "Remove the red flag and its pole." and a.media_type == "image"
    assert a.metadata["edit_type"] == "Remove an existing object"
    cdn = get_preset("pico-banana-400k").base_uri_hint
    remote = _read(uri, "pico-banana-400k", base_uri=cdn)
    assert remote[0].target_uri == cdn + "images/positive-edit/1.png"
    short = _read(uri, "pico-banana-400k", columns=PairColumns(instruction="summarized_text"))
    assert short[0].instruction == "Flag removed."  # a user column beats the preset's


def test_gpt_image_edit_needs_its_image_root(mem):
    item = {
        "image": ["input/00012343.png", "output/00012343.png"],
        "conversations": [
            {"from": "human", "value": "<image>\nAdd a rainbow over the hills."},
            {"from": "gpt", "value": "<image>"},
        ],
    }
    uri = _put(f"{mem}/training_json/hqedit_gpt_edit.json", json.dumps([item]))
    with pytest.raises(ConfigError, match="set pairs.base_uri"):
        _read(uri, "gpt-image-edit")
    (pair,) = _read(uri, "gpt-image-edit", base_uri=f"{mem}/gpt-edit/hqedit/edit")
    assert _path(pair.source_uri) == _path(f"{mem}/gpt-edit/hqedit/edit/input/00012343.png")
    assert _path(pair.target_uri) == _path(f"{mem}/gpt-edit/hqedit/edit/output/00012343.png")
    assert pair.instruction == "Add a rainbow over the hills."
    assert pair.corpus == "GPT-Image-Edit-1.5M"


def _png(rgb: tuple[int, int, int]) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.full((8, 12, 3), rgb, np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def _tar(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_x2edit_webdataset_shards(mem):
    meta = {
        "instruction": "Change the car to green.",
        "instruction_zh": "把车改成绿色",
        "task": "颜色更改",
        "label": "step1x",
    }
    shard = _tar(
        {
            "0000001.1.0.jpg": _png((200, 10, 10)),
            "0000001.2.jpg": _png((10, 200, 10)),
            "0000001.json": json.dumps(meta).encode(),
            "0000002.1.jpg": _png((1, 2, 3)),
            "0000002.2.jpg": _png((4, 5, 6)),
            "0000002.json": json.dumps({"instruction": "Remove the tree."}).encode(),
            "0000003.1.0.jpg": _png((0, 0, 0)),
            "0000003.json": b"{not json",
        }
    )
    uri = _put(f"{mem}/X2Edit-data/step1x-edit/0/00000.tar", shard)
    a, b, c = _read(f"{mem}/X2Edit-data/step1x-edit/*/*.tar", "x2edit")
    assert isinstance(a, PairItem) and isinstance(b, PairItem) and isinstance(c, BadRow)
    assert a.pair_id == "00000/0000001" and a.instruction == "Change the car to green."
    assert a.source_uri == f"tar://0000001.1.0.jpg::{_spelled(uri)}"
    assert b.source_uri.startswith("tar://0000002.1.jpg::")  # older shards: .1.jpg
    assert a.metadata["json"]["task"] == "颜色更改" and a.media_type == "image"
    assert "not JSON" in c.message
    assert read_image(a.source_uri)[0, 0].tolist() == [200, 10, 10]
    assert read_image(b.target_uri)[0, 0].tolist() == [4, 5, 6]


def _spelled(uri: str) -> str:
    """How a glob spells a memory:// file it found."""
    fs, path = fsspec.core.url_to_fs(uri)
    return fs.unstrip_protocol(path)
