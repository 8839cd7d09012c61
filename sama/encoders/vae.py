"""Wan2.1 VAE: uint8 video -> the normalised latents the Wan DiT consumes (SAMA.md §1).

Shape legend: B = batch, T = pixel frames (4k+1), H, W = pixel size (multiples of 8),
C = latent channels (16), T' = (T-1)/4 + 1 latent frames, H', W' = H/8, W/8.

Latents are ``(mu - latents_mean) / latents_std`` with the per-channel statistics of the VAE's
own config. That is the exact inverse of what diffusers' ``WanPipeline`` does before
``vae.decode`` (``latents / (1 / latents_std) + latents_mean``) and what
``WanImageToVideoPipeline`` applies to an encoded condition (``(mu - mean) * (1 / std)``).
``mu`` is the posterior *mean* (diffusers' ``retrieve_latents(..., sample_mode="argmax")``), not
a sample: a clip has one deterministic latent, stored once and reused every epoch.

Memory: ``AutoencoderKLWan`` already encodes causally in time, frame 0 alone and then groups of
4 frames, carrying a per-conv feature cache between groups, so encoder activations are bounded
by one 4-frame group. ``chunk_frames`` only bounds the *pixel* staging: we drive that same loop
(same groups, same cache, same order) while converting at most ``chunk_frames`` uint8 frames
to float on the device at a time. The result is identical to the one-call path (tested).
``tiling`` switches on diffusers' spatial tiling, which blends overlapping tiles and therefore
changes the latents slightly; it is recorded in ``model_info()``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from sama.encoders._hf import load_weights, source_info
from sama.encoders.config import VAEConfig, hash_model_config, resolve_device
from sama.errors import ConfigError, FatalError

if TYPE_CHECKING:
    import numpy as np
    import torch

Layout = Literal["THWC", "TCHW"]


class WanVAE:
    """A loaded ``AutoencoderKLWan`` with SAMA's pixel and latent conventions."""

    def __init__(self, model: Any, cfg: VAEConfig, device: str) -> None:
        import torch

        self.model = model
        self.cfg = cfg
        self.device = device
        self.dtype = model.dtype
        c = model.config
        self.z_dim = int(c.z_dim)
        self.temporal_factor = int(c.scale_factor_temporal or 4)
        self.spatial_factor = int(c.scale_factor_spatial or 8)
        self.mean_C = torch.tensor(c.latents_mean, dtype=torch.float32)
        self.std_C = torch.tensor(c.latents_std, dtype=torch.float32)
        if self.mean_C.shape != (self.z_dim,) or self.std_C.shape != (self.z_dim,):
            raise FatalError(
                f"vae: latents_mean/latents_std must have z_dim={self.z_dim} entries, got "
                f"{tuple(self.mean_C.shape)} / {tuple(self.std_C.shape)}"
            )
        self._black: dict[tuple[int, int, int], torch.Tensor] = {}

    @classmethod
    def load(cls, cfg: VAEConfig | None = None) -> WanVAE:
        """``AutoencoderKLWan.from_pretrained(model_id, subfolder=...)`` (safetensors only)."""
        cfg = (cfg or VAEConfig()).validate()
        from diffusers import AutoencoderKLWan

        device = resolve_device(cfg.device)
        model = load_weights(AutoencoderKLWan, cfg, "vae", dtype_arg="torch_dtype")
        if cfg.chunk_frames and model.config.patch_size is not None:
            raise ConfigError(
                "vae.chunk_frames is implemented for the Wan2.1 VAE (no patchify); "
                "this VAE has patch_size set: use chunk_frames=0"
            )
        model.to(device).eval().requires_grad_(False)
        if cfg.tiling:
            model.enable_tiling()
        return cls(model, cfg, device)

    # ---- shapes ---------------------------------------------------------------------------

    def latent_shape(self, num_frames: int, height: int, width: int) -> tuple[int, int, int, int]:
        """``(C, T', H', W')`` for a clip; ``ValueError`` unless T = 4k+1 and H, W % 8 == 0."""
        tf, sf = self.temporal_factor, self.spatial_factor
        if num_frames < 1 or (num_frames - 1) % tf != 0:
            raise ValueError(
                f"the Wan VAE needs {tf}k+1 frames (1, 5, 9, ..., 81), got {num_frames}"
            )
        if height < sf or width < sf or height % sf or width % sf:
            raise ValueError(
                f"frame size must be a positive multiple of {sf}, got {height}x{width} (HxW)"
            )
        return (self.z_dim, (num_frames - 1) // tf + 1, height // sf, width // sf)

    # ---- encode ---------------------------------------------------------------------------

    def encode(self, frames: np.ndarray | torch.Tensor, layout: Layout = "THWC") -> torch.Tensor:
        """uint8 video ``[T, H, W, 3]`` (or ``[T, 3, H, W]``, ``layout="TCHW"``) ->
        normalised latents ``[C, T', H', W']`` (float32, CPU).

        A leading batch dimension is accepted (``[B, T, ...]`` -> ``[B, C, T', H', W']``).
        Pixels are scaled to [-1, 1] as diffusers' ``VideoProcessor`` does.
        """
        import torch

        u8_BTCHW, batched = _as_video(frames, layout)
        _, T, _, H, W = u8_BTCHW.shape
        self.latent_shape(T, H, W)
        with torch.inference_mode():
            if self.cfg.chunk_frames:
                mu_BCTHW = self._encode_mu_chunked(u8_BTCHW, self.cfg.chunk_frames)
            else:
                x_BCTHW = self._pixels(u8_BTCHW)
                mu_BCTHW = self.model.encode(x_BCTHW).latent_dist.mean
            z_BCTHW = self.normalise(mu_BCTHW.float().cpu())
        return z_BCTHW if batched else z_BCTHW[0]

    def _pixels(self, u8_BTCHW: torch.Tensor) -> torch.Tensor:
        """uint8 ``[B, T, 3, H, W]`` (any device) -> ``[B, 3, T, H, W]`` in [-1, 1] on the device."""
        x = u8_BTCHW.to(self.device, non_blocking=True).permute(0, 2, 1, 3, 4).float()
        return (x / 255.0 * 2.0 - 1.0).to(self.dtype)

    def _encode_mu_chunked(self, u8_BTCHW: torch.Tensor, chunk: int) -> torch.Tensor:
        """The loop of ``AutoencoderKLWan._encode`` (frame 0, then groups of 4 frames, one
        shared causal cache), staging at most ``chunk`` pixel frames on the device at a time."""
        import torch

        vae, T = self.model, u8_BTCHW.shape[1]
        if not hasattr(vae, "clear_cache") or not hasattr(vae, "_cached_conv_counts"):
            raise FatalError(
                "vae.chunk_frames relies on AutoencoderKLWan's causal feature cache, which this "
                "diffusers version does not have; set chunk_frames=0"
            )
        tf = self.temporal_factor
        vae.clear_cache()
        outs = []
        try:
            for w0 in [0, *range(1, T, chunk)]:
                w1 = 1 if w0 == 0 else min(w0 + chunk, T)
                x_BCTHW = self._pixels(u8_BTCHW[:, w0:w1])
                for g0 in range(0, w1 - w0, tf if w0 else 1):
                    vae._enc_conv_idx = [0]
                    group = x_BCTHW[:, :, g0 : g0 + (tf if w0 else 1)]
                    outs.append(
                        vae.encoder(group, feat_cache=vae._enc_feat_map, feat_idx=vae._enc_conv_idx)
                    )
                del x_BCTHW
            h_BCTHW = vae.quant_conv(torch.cat(outs, 2))
        finally:
            vae.clear_cache()
        return h_BCTHW[:, : self.z_dim]  # posterior mean (DiagonalGaussianDistribution.mean)

    def normalise(self, mu_BCTHW: torch.Tensor) -> torch.Tensor:
        """``(mu - latents_mean) / latents_std`` per channel (dim 1), float32."""
        shape = (1, self.z_dim, 1, 1, 1)
        mean, std = self.mean_C.to(mu_BCTHW.device), self.std_C.to(mu_BCTHW.device)
        return (mu_BCTHW.float() - mean.view(shape)) / std.view(shape)

    def denormalise(self, z_BCTHW: torch.Tensor) -> torch.Tensor:
        """Inverse of ``normalise``: what ``vae.decode`` takes."""
        shape = (1, self.z_dim, 1, 1, 1)
        mean, std = self.mean_C.to(z_BCTHW.device), self.std_C.to(z_BCTHW.device)
        return z_BCTHW.float() * std.view(shape) + mean.view(shape)

    # ---- decode ---------------------------------------------------------------------------

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Normalised latents ``[C, T', H', W']`` (or ``[B, C, ...]``) -> uint8 frames
        ``[T, H, W, 3]`` (or ``[B, T, H, W, 3]``) on the CPU, for previews and validation."""
        import torch

        batched = latents.ndim == 5
        if latents.ndim not in (4, 5) or latents.shape[-4] != self.z_dim:
            raise ValueError(
                f"decode expects [C={self.z_dim}, T', H', W'] latents (optionally batched), "
                f"got {tuple(latents.shape)}"
            )
        z_BCTHW = latents if batched else latents[None]
        with torch.inference_mode():
            mu = self.denormalise(z_BCTHW.to(self.device)).to(self.dtype)
            x_BCTHW = self.model.decode(mu).sample.float()
            u8_BTHWC = ((x_BCTHW.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
            u8_BTHWC = u8_BTHWC.permute(0, 2, 3, 4, 1).cpu()
        return u8_BTHWC if batched else u8_BTHWC[0]

    # ---- black frames (cube inpainting in latent space, SAMA.md §3) -----------------------

    def black_frame_latent_full(
        self, height: int, width: int, latent_frame: int = 1
    ) -> torch.Tensor:
        """``[C, H', W']``: latent frame ``latent_frame`` of an all-black clip, normalised.

        ``latent_frame=0`` is a lone black frame (the first, causal-only latent);
        ``latent_frame=1`` (default) is 4 black frames that follow a black frame, which is what
        a run of blacked-out latent frames >= 1 looks like inside a clip.
        """
        if latent_frame < 0:
            raise ValueError(f"latent_frame must be >= 0, got {latent_frame}")
        key = (int(height), int(width), int(latent_frame))
        if key not in self._black:
            import torch

            n = 1 + self.temporal_factor * latent_frame
            self.latent_shape(n, height, width)
            black_THWC = torch.zeros((n, height, width, 3), dtype=torch.uint8)
            self._black[key] = self.encode(black_THWC)[:, latent_frame].contiguous()
        return self._black[key].clone()

    def black_frame_latent(self, height: int, width: int, latent_frame: int = 1) -> torch.Tensor:
        """``[C]``: the black latent of ``black_frame_latent_full`` averaged over space."""
        return self.black_frame_latent_full(height, width, latent_frame).mean(dim=(1, 2))

    # ---- provenance -----------------------------------------------------------------------

    def normalisation(self) -> dict[str, Any]:
        """How stored latents relate to the VAE posterior (recorded as ``latent_norm``)."""
        return {
            "kind": "wan_vae_mean_std",
            "formula": "(posterior_mean - mean) / std",
            "posterior": "mean",
            "pixel_range": [-1.0, 1.0],
            "mean": [float(v) for v in self.mean_C],
            "std": [float(v) for v in self.std_C],
        }

    def config_hash(self) -> str:
        return hash_model_config(dict(self.model.config))

    def model_info(self) -> dict[str, Any]:
        return {**source_info(self.cfg, self.config_hash()), "tiling": self.cfg.tiling}


def _as_video(frames: np.ndarray | torch.Tensor, layout: Layout) -> tuple[torch.Tensor, bool]:
    """uint8 ``[T, ...]`` / ``[B, T, ...]`` in ``layout`` -> (``[B, T, 3, H, W]``, batched)."""
    import numpy as np
    import torch

    if isinstance(frames, np.ndarray):
        import warnings

        with warnings.catch_warnings():  # a read-only view (the build's Arrow buffer): never
            warnings.simplefilter("ignore", UserWarning)  # written, only read into floats
            t = torch.from_numpy(np.ascontiguousarray(frames))
    else:
        t = frames
    if not isinstance(t, torch.Tensor) or t.dtype != torch.uint8:
        raise ValueError(f"frames must be a uint8 array/tensor, got {getattr(t, 'dtype', type(t))}")
    if t.ndim not in (4, 5):
        raise ValueError(f"frames must be [T, ...] or [B, T, ...] (4-D/5-D), got {tuple(t.shape)}")
    batched = t.ndim == 5
    t = t if batched else t[None]
    if layout == "THWC":
        t = t.permute(0, 1, 4, 2, 3)
    elif layout != "TCHW":
        raise ValueError(f"layout must be 'THWC' or 'TCHW', got {layout!r}")
    if t.shape[2] != 3:
        raise ValueError(f"frames must have 3 colour channels ({layout}), got {tuple(t.shape)}")
    return t, batched
