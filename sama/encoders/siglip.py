"""SigLIP anchor encoder: anchor frames -> 65 semantic tokens each (SAMA.md §2).

Shape legend: N = anchor images, P = g*g patch tokens of the vision tower (27*27 = 729 for
so400m-patch14-384), D = hidden size (1152 for so400m), G = pool_grid (8), K = G*G + 1 = 65.

Per image: the vision tower's ``last_hidden_state`` (after its post-LayerNorm) is reshaped to
the g x g patch grid, ``adaptive_avg_pool2d`` to G x G gives 64 local tokens (row-major), and one
global token follows: the mean of all P patch tokens (``global_token="mean"``) or the model's
attention-pooling head output (``"pooler"``). The released SAMA pooling is unpublished; this is
SAMA.md's "natural choice", and ``pooling_info()`` records it. Token order carries no position
for the DiT (semantic tokens get an all-zero RoPE table), it only has to be consistent.

Preprocessing is the checkpoint's own image processor (resize to the model's square input size
with PIL bicubic, no crop, rescale 1/255, normalise). We pin transformers' PIL backend so the
same pixels reach the model whether or not torchvision is installed on the build machine.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sama.encoders._hf import hub_kwargs, load_or_explain, load_weights, source_info
from sama.encoders.config import SiglipConfig, hash_model_config, resolve_device
from sama.errors import ConfigError

if TYPE_CHECKING:
    import numpy as np
    import torch

# A full SigLIP checkpoint (text + vision, e.g. the so400m repo) loaded into the vision tower
# leaves these weights unused; anything else unexpected is an error.
_TEXT_SIDE_PREFIXES = ("text_model.", "logit_scale", "logit_bias")
PROCESSOR_BACKEND = "pil"


class SiglipAnchorEncoder:
    """A loaded ``SiglipVisionModel`` + its image processor, pooling to K tokens per image."""

    def __init__(self, model: Any, processor: Any, cfg: SiglipConfig, device: str) -> None:
        self.model = model
        self.processor = processor
        self.cfg = cfg
        self.device = device
        vc = model.config
        self.hidden_size = int(vc.hidden_size)
        self.grid = int(vc.image_size) // int(vc.patch_size)
        self.num_tokens = cfg.tokens_per_anchor
        if cfg.pool_grid > self.grid:
            raise ConfigError(
                f"siglip.pool_grid={cfg.pool_grid} is larger than the model's patch grid "
                f"{self.grid}x{self.grid}; use pool_grid <= {self.grid}"
            )
        if cfg.global_token == "pooler" and not getattr(vc, "vision_use_head", True):
            raise ConfigError(
                "siglip.global_token='pooler' needs a model with a pooling head "
                "(vision_use_head=true); use global_token='mean'"
            )

    @classmethod
    def load(cls, cfg: SiglipConfig | None = None) -> SiglipAnchorEncoder:
        """``SiglipVisionModel.from_pretrained`` + ``AutoImageProcessor.from_pretrained``."""
        cfg = (cfg or SiglipConfig()).validate()
        from transformers import AutoImageProcessor, SiglipVisionModel

        device = resolve_device(cfg.device)
        model = load_weights(
            SiglipVisionModel, cfg, "siglip", allowed_unexpected=_TEXT_SIDE_PREFIXES
        )
        processor = load_or_explain(
            lambda: AutoImageProcessor.from_pretrained(
                cfg.model_id, backend=PROCESSOR_BACKEND, **hub_kwargs(cfg.revision, cfg.subfolder)
            ),
            "siglip image processor",
            cfg.model_id,
            cfg.subfolder,
            cfg.revision,
        )
        model.to(device).eval().requires_grad_(False)
        return cls(model, processor, cfg, device)

    def encode(self, frames_NHWC: np.ndarray | torch.Tensor) -> torch.Tensor:
        """uint8 RGB images ``[N, H, W, 3]`` -> tokens ``[N, K, D]`` (float32, CPU), batched."""
        import numpy as np
        import torch

        arr = frames_NHWC.cpu().numpy() if isinstance(frames_NHWC, torch.Tensor) else frames_NHWC
        arr = np.asarray(arr)
        if arr.dtype != np.uint8 or arr.ndim != 4 or arr.shape[-1] != 3:
            raise ValueError(
                f"SigLIP anchors must be uint8 [N, H, W, 3], got {arr.dtype} {tuple(arr.shape)}"
            )
        out = [
            self._encode_batch(arr[i : i + self.cfg.batch_size])
            for i in range(0, len(arr), self.cfg.batch_size)
        ]
        if not out:
            return torch.zeros((0, self.num_tokens, self.hidden_size))
        return torch.cat(out)

    def _encode_batch(self, images_NHWC: np.ndarray) -> torch.Tensor:
        import torch

        pixels = self.processor(images=list(images_NHWC), return_tensors="pt")["pixel_values"]
        with torch.inference_mode():
            o = self.model(pixel_values=pixels.to(self.device, self.model.dtype))
            tokens_NPD = o.last_hidden_state.float()
            pooled_ND = o.pooler_output.float() if self.cfg.global_token == "pooler" else None
            return pool_tokens(tokens_NPD, self.cfg.pool_grid, pooled_ND).cpu()

    # ---- provenance -----------------------------------------------------------------------

    def config_hash(self) -> str:
        return hash_model_config(self.model.config.to_dict())

    def model_info(self) -> dict[str, Any]:
        return source_info(self.cfg, self.config_hash())

    def pooling_info(self) -> dict[str, Any]:
        p = self.processor
        return {
            "source": "last_hidden_state",
            "patch_grid": [self.grid, self.grid],
            "local": f"adaptive_avg_pool2d {self.cfg.pool_grid}x{self.cfg.pool_grid}, row-major",
            "global": "mean of patch tokens"
            if self.cfg.global_token == "mean"
            else "pooler_output",
            "order": "local tokens then global token",
            "tokens_per_image": self.num_tokens,
            "hidden_size": self.hidden_size,
            "normalisation": "none (raw tower features)",
            "preprocess": {
                "backend": PROCESSOR_BACKEND,
                "size": dict(p.size) if p.size is not None else None,
                "resample": int(p.resample) if p.resample is not None else None,
                "rescale_factor": p.rescale_factor,
                "image_mean": list(p.image_mean),
                "image_std": list(p.image_std),
            },
        }


def pool_tokens(
    tokens_NPD: torch.Tensor, pool_grid: int, pooled_ND: torch.Tensor | None = None
) -> torch.Tensor:
    """Patch tokens ``[N, P, D]`` (P a square) -> ``[N, G*G + 1, D]``: G x G adaptive average
    pool of the patch grid (row-major) then the global token (``pooled_ND`` or the patch mean)."""
    import math

    import torch
    import torch.nn.functional as F

    N, P, D = tokens_NPD.shape
    g = math.isqrt(P)
    if g * g != P:
        raise ValueError(f"patch tokens must form a square grid, got P={P}")
    grid_NDgg = tokens_NPD.transpose(1, 2).reshape(N, D, g, g)
    local_NKD = F.adaptive_avg_pool2d(grid_NDgg, pool_grid).flatten(2).transpose(1, 2)
    global_N1D = (tokens_NPD.mean(dim=1) if pooled_ND is None else pooled_ND)[:, None]
    return torch.cat([local_NKD, global_N1D.to(local_NKD.dtype)], dim=1)
