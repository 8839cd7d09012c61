"""The model bundle a run trains: the Wan DiT + SAMA's modules, and what its shards must match.

``expected_provenance`` is computed from the model *configs* only (no weights are loaded just
to compare): the VAE and SigLIP config hashes come out identical to the ones the encoders
record from their loaded models (same ``hash_model_config`` over the same config dict), and
the shards are refused when they differ (CONVENTIONS.md rule 3).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from sama.errors import ConfigError
from trainer import checkpoint as ckpt_io
from trainer.config import TrainConfig
from trainer.model import SamaConfig, SamaTransformer


def siglip_width(cfg: TrainConfig) -> int:
    """``dit.siglip_dim``, or the SigLIP vision config's hidden size (config only, no weights)."""
    if cfg.dit.siglip_dim:
        return cfg.dit.siglip_dim
    return int(_siglip_config(cfg).hidden_size)


def _siglip_config(cfg: TrainConfig):
    from transformers import SiglipVisionConfig

    from sama.encoders._hf import load_or_explain

    s = cfg.siglip
    kw = {"revision": s.revision, **({"subfolder": s.subfolder} if s.subfolder else {})}
    return load_or_explain(
        lambda: SiglipVisionConfig.from_pretrained(s.model_id, **kw),
        "siglip config",
        s.model_id,
        s.subfolder,
        s.revision,
    )


def expected_provenance(cfg: TrainConfig) -> dict[str, Any]:
    """What the shards must have been built with: the trainer's VAE and SigLIP (ids and config
    hashes, from the configs alone, hashed exactly as the encoders hash their loaded models),
    the Wan latent normalisation, and the tokens per anchor the DiT expects (CONVENTIONS.md 3)."""
    from diffusers import AutoencoderKLWan

    from sama.encoders._hf import load_or_explain
    from sama.encoders.config import hash_model_config

    v = cfg.vae
    vae_config = load_or_explain(
        lambda: AutoencoderKLWan.load_config(
            v.model_id, subfolder=v.subfolder, revision=v.revision
        ),
        "vae config",
        v.model_id,
        v.subfolder,
        v.revision,
    )
    return {
        "vae": {"id": v.model_id, "config_hash": hash_model_config(dict(vae_config))},
        "siglip": {
            "id": cfg.siglip.model_id,
            "config_hash": hash_model_config(_siglip_config(cfg).to_dict()),
        },
        "latent_norm": {"kind": "wan_vae_mean_std"},
        "anchor_policy": {"tokens_per_anchor": cfg.dit.tokens_per_anchor},
    }


def build_model(cfg: TrainConfig, siglip_dim: int) -> SamaTransformer:
    """The Wan DiT (fp32 master weights) + SAMA's modules; stage 1 loads ``init_from``."""
    from sama.encoders._hf import check_source, quiet_hf

    check_source(cfg.dit.model_id, cfg.dit.subfolder, "dit")
    sama_cfg = SamaConfig(
        siglip_dim=siglip_dim,
        tokens_per_anchor=cfg.dit.tokens_per_anchor,
        mlp_hidden=cfg.dit.mlp_hidden,
    )
    with quiet_hf():
        model = SamaTransformer.from_pretrained_dit(
            cfg.dit.model_id,
            cfg.dit.subfolder,
            cfg.dit.revision,
            torch.float32,
            sama_cfg,
            init_seed=cfg.seed,
        )
    if cfg.gradient_checkpointing:
        model.enable_gradient_checkpointing()
    return model


def init_from_checkpoint(model: SamaTransformer, cfg: TrainConfig) -> Path:
    """Load the ``init_weights`` of the checkpoint ``init_from`` points at (a run dir works)."""
    found = ckpt_io.latest_checkpoint(cfg.init_from)
    if found is None:
        raise ConfigError(
            f"init_from={cfg.init_from!r} holds no checkpoint (looked for "
            "checkpoints/latest and state.json); train stage 0 first"
        )
    state = ckpt_io.load_weights(found, cfg.init_weights)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ConfigError(
            f"init_from checkpoint {found} does not fit this model: missing "
            f"{missing[:5]}, unexpected {unexpected[:5]}; check dit.* sizes"
        )
    return found
