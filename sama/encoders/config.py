"""Typed configs of the three frozen encoders (SAMA.md §1-2), stdlib only.

The model ids default to the real checkpoints; a local directory laid out like the hub repo
(``sama models make-tiny``) works with the same loading code. Every field is recorded in the
dataset provenance, so a value here is a property of the latents, not a tuning knob.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any, Literal

from sama.errors import ConfigError

WAN_DIFFUSERS_ID = "Wan-AI/Wan2.1-T2V-14B-Diffusers"
SIGLIP_ID = "google/siglip-so400m-patch14-384"

DTypeName = Literal["float32", "bfloat16", "float16"]
_DTYPES = ("float32", "bfloat16", "float16")
_DEVICE_RE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


def _check_common(
    where: str, model_id: str, device: str, dtype: str, subfolders: dict[str, str | None]
) -> None:
    if not isinstance(model_id, str) or not model_id.strip():
        raise ConfigError(
            f"{where}.model_id must be a hub id (e.g. {WAN_DIFFUSERS_ID!r}) or a local directory"
        )
    if not isinstance(device, str) or not _DEVICE_RE.match(device):
        raise ConfigError(
            f"{where}.device={device!r}: use 'auto' (cuda if available, else cpu), 'cpu', "
            "'cuda', 'cuda:N' or 'mps'"
        )
    if dtype not in _DTYPES:
        raise ConfigError(f"{where}.dtype={dtype!r}: use one of {list(_DTYPES)}")
    for name, sub in subfolders.items():
        if sub is not None and (not sub or sub.startswith("/") or ".." in sub.split("/")):
            raise ConfigError(
                f"{where}.{name}={sub!r}: a subfolder is a relative path inside the model repo "
                "(e.g. 'vae'), or null for none"
            )


def _positive(where: str, name: str, value: Any) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigError(f"{where}.{name}={value!r}: must be an integer >= 1")


@dataclass
class VAEConfig:
    """Wan2.1 causal 3-D VAE (16 latent channels, 4x time, 8x8 space)."""

    model_id: str = WAN_DIFFUSERS_ID
    subfolder: str | None = "vae"
    revision: str | None = None
    device: str = "auto"
    dtype: DTypeName = "float32"
    # Pixel frames converted to float and moved to the device at a time; 0 = the whole clip.
    # A multiple of 4: the VAE consumes frame 0 alone, then groups of 4 frames, carrying its
    # causal cache across them; chunking only changes how the input is staged, not the result.
    chunk_frames: int = 0
    # diffusers' spatial tiling (enable_tiling): bounded memory for large frames, but the
    # latents are blended across tile overlaps, so they differ slightly from untiled ones.
    tiling: bool = False

    def validate(self) -> VAEConfig:
        _check_common("vae", self.model_id, self.device, self.dtype, {"subfolder": self.subfolder})
        cf = self.chunk_frames
        if not isinstance(cf, int) or isinstance(cf, bool) or cf < 0 or cf % 4 != 0:
            raise ConfigError(
                f"vae.chunk_frames={cf!r}: use 0 (whole clip at once) or a positive multiple of 4 "
                "(the causal VAE encodes frame 0 alone, then groups of 4 frames)"
            )
        if not isinstance(self.tiling, bool):
            raise ConfigError(f"vae.tiling={self.tiling!r}: must be true or false")
        if self.tiling and cf:
            raise ConfigError(
                "vae.tiling and vae.chunk_frames cannot be combined: diffusers' tiled encoder "
                "stages the whole clip itself; set chunk_frames=0 or tiling=false"
            )
        return self


@dataclass
class SiglipConfig:
    """SigLIP vision tower for the semantic anchor tokens (SAMA.md §2): 8x8 pool + 1 global."""

    model_id: str = SIGLIP_ID
    subfolder: str | None = None
    revision: str | None = None
    device: str = "auto"
    dtype: DTypeName = "float32"
    pool_grid: int = 8
    # "mean": mean of the patch tokens; "pooler": the model's attention-pooling head output.
    global_token: Literal["mean", "pooler"] = "mean"
    batch_size: int = 16

    def validate(self) -> SiglipConfig:
        _check_common(
            "siglip", self.model_id, self.device, self.dtype, {"subfolder": self.subfolder}
        )
        _positive("siglip", "pool_grid", self.pool_grid)
        _positive("siglip", "batch_size", self.batch_size)
        if self.global_token not in ("mean", "pooler"):
            raise ConfigError(
                f"siglip.global_token={self.global_token!r}: use 'mean' (mean of the patch "
                "tokens) or 'pooler' (the model's pooling head)"
            )
        return self

    @property
    def tokens_per_anchor(self) -> int:
        return self.pool_grid * self.pool_grid + 1


@dataclass
class TextEncoderConfig:
    """umT5 text encoder and tokenizer of the Wan2.1 diffusers repo."""

    model_id: str = WAN_DIFFUSERS_ID
    subfolder: str | None = "text_encoder"
    tokenizer_subfolder: str | None = "tokenizer"
    revision: str | None = None
    device: str = "auto"
    dtype: DTypeName = "float32"
    max_length: int = 512
    batch_size: int = 8
    # "max_length" pads every prompt to max_length exactly like diffusers' WanPipeline does;
    # "longest" pads to the longest prompt of the batch (faster; real tokens are masked the
    # same way, so the trimmed embeddings agree up to float rounding).
    padding: Literal["max_length", "longest"] = "max_length"

    def validate(self) -> TextEncoderConfig:
        _check_common(
            "text_encoder",
            self.model_id,
            self.device,
            self.dtype,
            {"subfolder": self.subfolder, "tokenizer_subfolder": self.tokenizer_subfolder},
        )
        _positive("text_encoder", "max_length", self.max_length)
        _positive("text_encoder", "batch_size", self.batch_size)
        if self.padding not in ("max_length", "longest"):
            raise ConfigError(
                f"text_encoder.padding={self.padding!r}: use 'max_length' (as WanPipeline) "
                "or 'longest'"
            )
        return self


def resolve_device(name: str = "auto") -> str:
    """``"auto"`` -> ``"cuda"`` when a GPU is visible, else ``"cpu"``; other names pass through."""
    if not isinstance(name, str) or not _DEVICE_RE.match(name):
        raise ConfigError(f"device={name!r}: use 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'")
    if name != "auto":
        return name
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def resolve_dtype(name: str):
    """``"float32" | "bfloat16" | "float16"`` -> the ``torch.dtype``."""
    if name not in _DTYPES:
        raise ConfigError(f"dtype={name!r}: use one of {list(_DTYPES)}")
    import torch

    return getattr(torch, name)


# Keys of a saved model config that say where/how it was loaded, not what the model is.
_VOLATILE_KEYS = {"transformers_version", "dtype", "torch_dtype", "name_or_path"}


def hash_model_config(config: dict[str, Any]) -> str:
    """sha256 (hex) of a model config as sorted-key JSON, for provenance.

    Keys starting with ``_`` (``_name_or_path``, ``_diffusers_version``...) and the
    library-version / load-dtype keys are dropped, so the hash names the architecture and its
    constants (e.g. the VAE's ``latents_mean``), not the path or the library it came through.
    """

    def clean(obj: Any) -> Any:
        if isinstance(obj, dict):
            return {
                str(k): clean(v)
                for k, v in obj.items()
                if not str(k).startswith("_") and k not in _VOLATILE_KEYS
            }
        if isinstance(obj, list | tuple):
            return [clean(v) for v in obj]
        return obj

    blob = json.dumps(clean(config), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()
