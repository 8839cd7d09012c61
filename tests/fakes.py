"""Synthetic ``clips`` / ``pairs`` rows and shards (v2 by default, v1 on request) for loader tests
and benchmarks.

Rows validate against the specs; tensors are seeded random bf16 (deterministic per row), so a
test can check what came out of a loader. Shapes are tiny by default (C=4 latent channels,
4x6 latent pixels, 8-d SigLIP and text widths); the benchmark passes realistic ones. v2 rows
leave ``preview`` null (it is nullable) unless the caller sets it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from datasets_spec import get_spec
from datasets_spec.tensors import encode_array
from sama.shards import write_shard

PRETEXT_PREFIXES = (
    "",
    "[Complete the missing regions in the video.] ",
    "[Restore the video to normal playback speed.] ",
    "[Restore the correct spatio-temporal order of the video segments.] ",
)


def fake_provenance(
    kind: str = "clips", channels: int = 4, version: str = "v2", **overrides
) -> dict:
    """A provenance dict with every ``datasets_spec.provenance.REQUIRED`` key + ``black_latent``."""
    prov = {
        "spec": f"{kind}/{version}",
        "sama_version": "0.1.0",
        "vae": {"id": "fake/wan-vae", "config_hash": "vae0", "revision": None},
        "latent_norm": {"kind": "wan_vae_mean_std"},
        "siglip": {"id": "fake/siglip", "config_hash": "sig0"},
        "anchor_policy": {"tokens_per_anchor": 65, "num_anchors": 1},
        "frame_policy": {"frames": "4k+1"},
        "resolution_policy": {"buckets": "480p"},
        "build_config": {"seed": 0},
        "black_latent": [round(-0.5 + 0.1 * c, 3) for c in range(channels)],
    }
    prov.update(overrides)
    return prov


def _tensor(rng: np.random.Generator, shape: Sequence[int]) -> tuple[bytes, list[int], str]:
    return encode_array(rng.standard_normal(tuple(shape)).astype(np.float32), "bfloat16")


def _put(row: dict, name: str, value: tuple[bytes, list[int], str] | None) -> None:
    row[name], row[f"{name}_shape"], row[f"{name}_dtype"] = value if value else (None,) * 3


def _text(row: dict, rng: np.random.Generator, prompts: list[str], dim: int) -> None:
    lengths = [int(x) for x in rng.integers(2, 6, size=len(prompts))]
    row["text_prompts"], row["text_lengths"] = prompts, lengths
    _put(row, "text_embeds", _tensor(rng, (sum(lengths), dim)))


def _common(rng, latent_hw, anchors, siglip_dim) -> dict:
    row = {
        "bucket_width": latent_hw[1] * 8,
        "bucket_height": latent_hw[0] * 8,
        "orig_width": latent_hw[1] * 8,
        "orig_height": latent_hw[0] * 8,
        "anchor_frame_indices": [0] * anchors,
    }
    _put(row, "anchor_tokens", _tensor(rng, (anchors, 65, siglip_dim)))
    return row


def make_fake_clip_rows(
    n: int,
    *,
    prefix: str = "clip",
    channels: int = 4,
    latent_frames: int = 3,
    latent_hw: tuple[int, int] = (4, 6),
    anchors: int = 1,
    siglip_dim: int = 8,
    text_dim: int | None = 8,
    seed: int = 0,
) -> list[dict]:
    """``n`` valid ``clips/v1`` rows ``{prefix}-{i}``; text embeddings for the 4 pretext prompts."""
    rows = []
    for i in range(n):
        rng = np.random.default_rng([seed, i, 1])
        caption = f"a clip number {i}"
        row = {
            "clip_id": f"{prefix}-{i}",
            "video_id": f"{prefix}-video-{i // 2}",
            "source_uri": f"memory://videos/{prefix}-{i // 2}.mp4",
            "shot_index": 0,
            "clip_index": i % 2,
            "shot_start_frame": 0,
            "shot_end_frame": 400,
            "shot_detector": "content",
            "start_frame": 0,
            "start_s": 0.0,
            "num_frames": (latent_frames - 1) * 4 + 1,
            "fps": 24.0,
            "caption": caption,
            "caption_source": "manifest",
            "mean_luma": 100.0,
            "motion_score": 2.5,
            **_common(rng, latent_hw, anchors, siglip_dim),
        }
        _put(row, "latents", _tensor(rng, (channels, latent_frames, *latent_hw)))
        if text_dim:
            _text(row, rng, [p + caption for p in PRETEXT_PREFIXES], text_dim)
        else:
            _put(row, "text_embeds", None)
            row["text_prompts"] = row["text_lengths"] = None
        rows.append(row)
    return rows


def make_fake_pair_rows(
    n: int,
    *,
    prefix: str = "pair",
    media: str = "image",
    channels: int = 4,
    latent_frames: int | None = None,
    latent_hw: tuple[int, int] = (4, 6),
    anchors: int = 1,
    siglip_dim: int = 8,
    text_dim: int | None = 8,
    seed: int = 0,
    scores: Callable[[int], dict[str, float | None]] | None = None,
) -> list[dict]:
    """``n`` valid ``pairs/v1`` rows ``{prefix}-{i}``; ``scores(i)`` gives the judge scores
    (keys ``if``, ``vq``, ``cp``, ``mc``; default all 9.0, ``mc`` None for images)."""
    t = latent_frames or (1 if media == "image" else 3)
    rows = []
    for i in range(n):
        rng = np.random.default_rng([seed, i, 2])
        sc = (
            scores(i)
            if scores
            else {"if": 9.0, "vq": 9.0, "cp": 9.0, "mc": None if media == "image" else 9.0}
        )
        row = {
            "pair_id": f"{prefix}-{i}",
            "corpus": "fake",
            "media_type": media,
            "source_uri": f"memory://src/{prefix}-{i}",
            "target_uri": f"memory://tgt/{prefix}-{i}",
            "instruction": f"edit number {i}",
            "start_frame": 0,
            "num_frames": (t - 1) * 4 + 1,
            "fps": None if media == "image" else 24.0,
            "judge_model": "fake-judge",
            **{f"score_{k}": sc.get(k) for k in ("if", "vq", "cp", "mc")},
            **_common(rng, latent_hw, anchors, siglip_dim),
        }
        _put(row, "source_latents", _tensor(rng, (channels, t, *latent_hw)))
        _put(row, "target_latents", _tensor(rng, (channels, t, *latent_hw)))
        if text_dim:
            _text(row, rng, [f"[Video edit] edit number {i}"], text_dim)
        else:
            _put(row, "text_embeds", None)
            row["text_prompts"] = row["text_lengths"] = None
        rows.append(row)
    return rows


def write_fake_shard(
    root: str,
    kind: str,
    name: str,
    rows: list[dict],
    provenance: dict | None = None,
    row_group_rows: int = 4,
    subdir: str = "",
) -> str:
    """Write ``rows`` to ``{root}/{subdir}{kind}/{name}.parquet`` with a fake provenance (its
    ``spec`` picks the version; default v2). ``subdir="data/"`` gives the published layout."""
    prov = provenance or fake_provenance(kind)
    spec = get_spec(prov["spec"])
    uri = f"{root.rstrip('/')}/{subdir}{kind}/{name}.parquet"
    write_shard(uri, spec.from_rows(rows), spec, prov, row_group_rows=row_group_rows)
    return uri
