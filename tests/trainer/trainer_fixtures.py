"""Tiny models + synthetic shards that fit them, for the training tests and the benchmark.

The shards carry the provenance the trainer expects from the tiny bundle (ids and config
hashes computed exactly as the encoders compute them), latents with the DiT's 16 channels,
3 latent frames of 4x6 latent pixels, 65 SigLIP tokens of the tiny SigLIP width (32) and umT5
embeddings of the tiny text width (32) for every prompt a row can be trained with.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from tests.fakes import fake_provenance, make_fake_clip_rows, make_fake_pair_rows, write_fake_shard

# two local processes under torchrun (gloo on CPU)
TORCHRUN_2 = [
    sys.executable,
    "-m",
    "torch.distributed.run",
    "--standalone",
    "--nproc_per_node",
    "2",
]

# Written out by hand from SAMA.md section 7 (not generated from trainer/convert.py).
RELEASED_BLOCK_NAMES = {
    *(f"self_attn.{m}.{p}" for m in "qkvo" for p in ("weight", "bias")),
    "self_attn.norm_q.weight",
    "self_attn.norm_k.weight",
    *(f"cross_attn.{m}.{p}" for m in "qkvo" for p in ("weight", "bias")),
    "cross_attn.norm_q.weight",
    "cross_attn.norm_k.weight",
    "norm3.weight",
    "norm3.bias",
    "ffn.0.weight",
    "ffn.0.bias",
    "ffn.2.weight",
    "ffn.2.bias",
    "modulation",
}
RELEASED_TOP_NAMES = {
    "patch_embedding.weight",
    "patch_embedding.bias",
    *(
        f"{m}.{i}.{p}"
        for m in ("text_embedding", "time_embedding")
        for i in (0, 2)
        for p in ("weight", "bias")
    ),
    "time_projection.1.weight",
    "time_projection.1.bias",
    "head.head.weight",
    "head.head.bias",
    "head.modulation",
    "segment_embedding.weight",
    *(f"siglip_feat_mlp.{m}.{p}" for m in ("norm", "fc1", "fc2") for p in ("weight", "bias")),
    *(f"semantic_head.{m}.{p}" for m in ("norm", "proj") for p in ("weight", "bias")),
}


def released_names(num_layers: int) -> set[str]:
    """Every name of a released SAMA checkpoint with ``num_layers`` blocks (SAMA.md 7)."""
    names = set(RELEASED_TOP_NAMES)
    for i in range(num_layers):
        names |= {f"blocks.{i}.{n}" for n in RELEASED_BLOCK_NAMES}
    return names


REPO = Path(__file__).resolve().parents[2]


def torchrun_env() -> dict[str, str]:
    """Environment of the ``torchrun`` subprocesses: offline, one thread, this checkout."""
    return {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "PYTHONPATH": str(REPO),
    }


TINY_DIM = 32  # tiny SigLIP hidden size and tiny umT5 d_model (sama.encoders.tiny)
CHANNELS = 16


def tiny_provenance(models_dir: str | Path, kind: str) -> dict:
    from diffusers import AutoencoderKLWan
    from transformers import SiglipVisionConfig

    from sama.encoders.config import hash_model_config

    wan, siglip = f"{models_dir}/wan", f"{models_dir}/siglip"
    vae_hash = hash_model_config(dict(AutoencoderKLWan.load_config(wan, subfolder="vae")))
    sig_hash = hash_model_config(SiglipVisionConfig.from_pretrained(siglip).to_dict())
    return fake_provenance(
        kind,
        channels=CHANNELS,
        vae={"id": wan, "config_hash": vae_hash, "revision": None},
        siglip={"id": siglip, "config_hash": sig_hash},
    )


def write_train_shards(
    root: str | Path,
    models_dir: str | Path,
    clips: int = 8,
    image_pairs: int = 8,
    video_pairs: int = 0,
    text: bool = True,
    seed: int = 0,
    latent_frames: int = 3,
    latent_hw: tuple[int, int] = (4, 6),
) -> str:
    """``ROOT/clips`` (+ ``ROOT/pairs``) shards for the tiny bundle in ``models_dir``."""
    root = str(root)
    dims = dict(
        channels=CHANNELS,
        siglip_dim=TINY_DIM,
        text_dim=TINY_DIM if text else None,
        seed=seed,
        latent_hw=latent_hw,
    )
    if clips:
        rows = make_fake_clip_rows(clips, prefix="cl", latent_frames=latent_frames, **dims)
        write_fake_shard(root, "clips", "c0", rows, tiny_provenance(models_dir, "clips"))
    pairs = []
    if image_pairs:
        pairs += make_fake_pair_rows(image_pairs, prefix="pi", **dims)
    if video_pairs:
        pairs += make_fake_pair_rows(
            video_pairs, prefix="pv", media="video", latent_frames=latent_frames, **dims
        )
    if pairs:
        write_fake_shard(root, "pairs", "p0", pairs, tiny_provenance(models_dir, "pairs"))
    return root
