"""Small valid rows of each spec, for tests that need shards without running a build."""

from __future__ import annotations

import numpy as np

from datasets_spec.tensors import encode_array


def tensor(rng: np.random.Generator, shape, dtype: str = "bfloat16"):
    return encode_array(rng.standard_normal(shape).astype(np.float32), dtype)


def clip_row(i: int, rng: np.random.Generator, latent_shape=(16, 3, 4, 6), siglip_dim=8) -> dict:
    lat = tensor(rng, latent_shape)
    anc = tensor(rng, (1, 65, siglip_dim))
    return {
        "clip_id": f"v{i}-s000-c00",
        "video_id": f"v{i}",
        "source_uri": f"/data/v{i}.mp4",
        "shot_index": 0,
        "clip_index": 0,
        "shot_start_frame": 0,
        "shot_end_frame": 40,
        "shot_detector": "content",
        "start_frame": 0,
        "start_s": 0.0,
        "num_frames": (latent_shape[1] - 1) * 4 + 1,
        "fps": 24.0,
        "orig_width": 96,
        "orig_height": 64,
        "bucket_width": latent_shape[3] * 8,
        "bucket_height": latent_shape[2] * 8,
        "caption": f"clip {i}",
        "caption_source": "manifest",
        "latents": lat[0],
        "latents_shape": lat[1],
        "latents_dtype": lat[2],
        "anchor_frame_indices": [0],
        "anchor_tokens": anc[0],
        "anchor_tokens_shape": anc[1],
        "anchor_tokens_dtype": anc[2],
        "text_prompts": None,
        "text_lengths": None,
        "text_embeds": None,
        "text_embeds_shape": None,
        "text_embeds_dtype": None,
        "mean_luma": 100.0,
        "motion_score": 2.5,
    }


def clip_rows(n: int, seed: int = 0, **kw) -> list[dict]:
    rng = np.random.default_rng(seed)
    return [clip_row(i, rng, **kw) for i in range(n)]
