"""Frozen encoders of the SAMA data engine: Wan2.1 VAE, umT5 text encoder, SigLIP anchors.

Importing this package is cheap (configs only); the model classes import torch, diffusers and
transformers when first touched:

    from sama.encoders import WanVAE, VAEConfig
    vae = WanVAE.load(VAEConfig(model_id="tiny/wan"))
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sama.encoders.config import (
    SIGLIP_ID,
    WAN_DIFFUSERS_ID,
    SiglipConfig,
    TextEncoderConfig,
    VAEConfig,
    hash_model_config,
    resolve_device,
    resolve_dtype,
)

if TYPE_CHECKING:
    from sama.encoders.siglip import SiglipAnchorEncoder
    from sama.encoders.text import UMT5TextEncoder
    from sama.encoders.tiny import make_tiny_models, tiny_encoder_configs
    from sama.encoders.vae import WanVAE

_LAZY = {
    "WanVAE": "sama.encoders.vae",
    "SiglipAnchorEncoder": "sama.encoders.siglip",
    "UMT5TextEncoder": "sama.encoders.text",
    "make_tiny_models": "sama.encoders.tiny",
    "tiny_encoder_configs": "sama.encoders.tiny",
}

__all__ = [
    "SIGLIP_ID",
    "WAN_DIFFUSERS_ID",
    "SiglipAnchorEncoder",
    "SiglipConfig",
    "TextEncoderConfig",
    "UMT5TextEncoder",
    "VAEConfig",
    "WanVAE",
    "hash_model_config",
    "make_tiny_models",
    "resolve_device",
    "resolve_dtype",
    "tiny_encoder_configs",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'sama.encoders' has no attribute {name!r}")
