"""A small valid built dataset (clips, pairs, errors, summary.json, build_config.yaml) written
with the real shard writer, plus tiny generated source videos for the report's anchor frames.
Shards are ``clips/v2`` / ``pairs/v2`` (what builds write: each row has a JPEG ``preview`` of its
anchor frame), or v1 with ``make_dataset(..., version="v1")``.

Legend: C latent channels, T latent frames, H, W latent height/width.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import yaml

from datasets_spec import CLIPS_V1, CLIPS_V2, ERRORS_V1, PAIRS_V1, PAIRS_V2
from datasets_spec.preview import encode_preview
from datasets_spec.tensors import encode_array
from sama.shards import write_shard

SPECS = {"v1": {"clips": CLIPS_V1, "pairs": PAIRS_V1}, "v2": {"clips": CLIPS_V2, "pairs": PAIRS_V2}}

VAE_ID = "Wan-AI/Wan2.1-T2V-14B-Diffusers"
LATENT_SHAPE = (16, 3, 8, 12)  # C, T, H, W: 9 frames of a 96x64 bucket
SIGLIP_DIM = 8


def provenance(kind: str, vae_id: str = VAE_ID, version: str = "v2") -> dict:
    return {
        "spec": f"{kind}/{'v1' if kind == 'errors' else version}",
        "sama_version": "0.1.0",
        "vae": {"id": vae_id, "revision": "main", "config_hash": "abc123"},
        "latent_norm": {"kind": "wan_mean_std"},
        "siglip": {"id": "google/siglip-so400m-patch14-384", "config_hash": "def456"},
        "anchor_policy": {"num_anchors": 1, "tokens_per_anchor": 65},
        "frame_policy": {"num_frames": 9, "stride": 1},
        "resolution_policy": {"buckets": "480p-15"},
        "build_config": {"seed": 0},
    }


def latents(rng: np.random.Generator, shape=LATENT_SHAPE, phase: float = 0.0) -> np.ndarray:
    """Smooth coloured patterns (so previews show structure) plus a little noise."""
    c, t, h, w = shape
    yy, xx = np.meshgrid(np.linspace(0, 1, h), np.linspace(0, 1, w), indexing="ij")
    out_CTHW = rng.standard_normal(shape).astype(np.float32) * 0.1
    for ci in range(c):
        for ti in range(t):
            out_CTHW[ci, ti] += np.sin(3 * (xx + ti * 0.2) + ci + phase) * np.cos(2 * yy + ci)
    return out_CTHW


def _tensor(prefix: str, arr: np.ndarray, dtype: str = "bfloat16") -> dict:
    data, shape, dt = encode_array(arr, dtype)
    return {prefix: data, f"{prefix}_shape": shape, f"{prefix}_dtype": dt}


def _no_text() -> dict:
    return {
        "text_prompts": None,
        "text_lengths": None,
        "text_embeds": None,
        "text_embeds_shape": None,
        "text_embeds_dtype": None,
    }


def clip_row(video: str, shot: int, clip: int, rng: np.random.Generator, uri: str) -> dict:
    start = shot * 9
    return {
        "clip_id": f"{video}-s{shot:03d}-c{clip:02d}",
        "video_id": video,
        "source_uri": uri,
        "shot_index": shot,
        "clip_index": clip,
        "shot_start_frame": start,
        "shot_end_frame": start + 9,
        "shot_detector": "content:27",
        "start_frame": start,
        "start_s": start / 24.0,
        "num_frames": 9,
        "fps": 24.0,
        "orig_width": 96,
        "orig_height": 64,
        "bucket_width": 96,
        "bucket_height": 64,
        "caption": f"a red square slides across a blue background in {video} shot {shot}",
        "caption_source": "manifest",
        "anchor_frame_indices": [0],
        **_tensor("latents", latents(rng, phase=shot)),
        **_tensor("anchor_tokens", rng.standard_normal((1, 65, SIGLIP_DIM)).astype(np.float32)),
        **_no_text(),
        "mean_luma": 80.0 + shot,
        "motion_score": 3.5,
    }


def pair_row(i: int, rng: np.random.Generator, media: str, src: str, tgt: str) -> dict:
    t = 1 if media == "image" else 3
    shape = (16, t, 8, 12)
    return {
        "pair_id": f"p{i}",
        "corpus": "tiny-edit",
        "media_type": media,
        "source_uri": src,
        "target_uri": tgt,
        "instruction": f"make the square green number {i}",
        "start_frame": 0,
        "num_frames": 1 if media == "image" else 9,
        "fps": None if media == "image" else 24.0,
        "orig_width": 96,
        "orig_height": 64,
        "bucket_width": 96,
        "bucket_height": 64,
        **_tensor("source_latents", latents(rng, shape)),
        **_tensor("target_latents", latents(rng, shape, phase=1.5)),
        "anchor_frame_indices": [0],
        **_tensor("anchor_tokens", rng.standard_normal((1, 65, SIGLIP_DIM)).astype(np.float32)),
        **_no_text(),
        "score_if": 9.0 - i * 0.5,
        "score_vq": 9.5,
        "score_cp": 8.0 + i * 0.5,
        "score_mc": None if media == "image" else 8.5,
        "judge_model": "tiny-judge",
    }


def error_row(item: str, uri: str, record_kind: str, stage: str, kind: str, msg: str) -> dict:
    return {
        "error_id": f"{item}:{stage}",
        "input_uri": uri,
        "item_id": item,
        "record_kind": record_kind,
        "stage": stage,
        "kind": kind,
        "message": msg,
        "time": datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
    }


def frame(i: int = 0, color=(0, 0, 200)) -> np.ndarray:
    """Frame ``i`` of the test videos: a red square sliding over a coloured background."""
    img = np.zeros((64, 96, 3), np.uint8)
    img[:] = color
    img[20:44, 2 + i * 2 : 26 + i * 2] = (230, 30, 30)
    return img


def with_previews(rows: list[dict], version: str) -> list[dict]:
    """v2 rows carry the JPEG of their anchor frame (here: frame 0 of a test video)."""
    if version == "v2":
        for i, r in enumerate(rows):
            r["preview"] = encode_preview(frame(i % 8, (0, 40 * (i % 5), 200 - 40 * (i % 5))))
    return rows


def write_video(path: Path, frames: int = 27, color=(0, 0, 200)) -> str:
    """A tiny H.264 96x64 video: a red square sliding over a coloured background."""
    import av

    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=24)
        s.width, s.height, s.pix_fmt = 96, 64, "yuv420p"
        for i in range(frames):
            img = frame(i, color)
            for p in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return str(path)


def make_dataset(root: Path, media: Path, version: str = "v2") -> dict:
    """Write the dataset; returns what the tests need to know about it."""
    rng = np.random.default_rng(0)
    clips_spec, pairs_spec = SPECS[version]["clips"], SPECS[version]["pairs"]
    media.mkdir(parents=True, exist_ok=True)
    videos = {
        v: write_video(media / f"{v}.mp4", color=(0, 40 * i, 200 - 40 * i))
        for i, v in enumerate(["v0", "v1", "v2"])
    }
    videos["v3"] = str(media / "missing.mp4")  # unreadable source: the report says so
    clips_a = [clip_row("v0", s, 0, rng, videos["v0"]) for s in range(3)]
    clips_b = [clip_row(v, 0, 0, rng, videos[v]) for v in ("v1", "v2", "v3")]
    clips_b.append(clip_row("v1", 1, 0, rng, videos["v1"]))
    with_previews(clips_a + clips_b, version)
    write_shard(
        str(root / "clips" / "part-00000.parquet"),
        clips_spec.from_rows(clips_a),
        clips_spec,
        provenance("clips", version=version),
        row_group_rows=2,
    )
    write_shard(
        str(root / "clips" / "part-00001.parquet"),
        clips_spec.from_rows(clips_b),
        clips_spec,
        provenance("clips", version=version),
        row_group_rows=2,
    )
    pairs = [
        pair_row(0, rng, "image", videos["v0"], videos["v1"]),
        pair_row(1, rng, "video", videos["v1"], videos["v2"]),
        pair_row(2, rng, "video", videos["v2"], videos["v0"]),
    ]
    with_previews(pairs, version)
    write_shard(
        str(root / "pairs" / "part-00000.parquet"),
        pairs_spec.from_rows(pairs),
        pairs_spec,
        provenance("pairs", version=version),
    )
    errors = [
        error_row("v4", "/in/v4.mp4", "clips", "probe", "not_a_video", "no video stream"),
        error_row(
            "v5",
            "/in/v5.mp4",
            "clips",
            "detect_shots",
            "no_usable_shot",
            "every shot is shorter than 9 frames",
        ),
        error_row("v6", "/in/v6.mp4", "clips", "probe", "not_a_video", "zero streams"),
        error_row("p3", "manifest.jsonl#3", "pairs", "judge", "filtered", "IF 6 < 8"),
    ]
    write_shard(
        str(root / "errors" / "part-00000.parquet"),
        ERRORS_V1.from_rows(errors),
        ERRORS_V1,
        provenance("errors"),
    )
    inputs = [
        {"id": v, "uri": f"/in/{v}.mp4", "kind": "clips"}
        for v in ("v0", "v1", "v2", "v3", "v4", "v5", "v6")
    ]
    inputs += [{"id": f"p{i}", "uri": f"manifest.jsonl#{i}", "kind": "pairs"} for i in range(4)]
    (root / "summary.json").write_text(
        json.dumps(
            {
                "inputs": inputs,
                "num_inputs": len(inputs),
                "wall_s": 12.5,
                "sama_version": "0.1.0",
                "counts": {"clips": 7, "pairs": 3, "errors": 4},
            }
        )
    )
    (root / "build_config.yaml").write_text(
        yaml.safe_dump({"license": "cc-by-4.0", "seed": 0, "frames": {"num_frames": 9}})
    )
    return {"clips": clips_a + clips_b, "pairs": pairs, "errors": errors, "inputs": inputs}


@pytest.fixture
def dataset(tmp_path: Path) -> tuple[Path, dict]:
    root = tmp_path / "ds"
    return root, make_dataset(root, tmp_path / "media")


@pytest.fixture
def fx() -> SimpleNamespace:
    """The row factories, for tests that build their own broken shards."""
    return SimpleNamespace(
        clip_row=clip_row,
        pair_row=pair_row,
        error_row=error_row,
        provenance=provenance,
        make_dataset=make_dataset,
        with_previews=with_previews,
        specs=SPECS,
        latents=latents,
    )
