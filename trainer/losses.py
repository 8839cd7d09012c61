"""SAMA's objective: flow matching on the target latents + 0.1 x L1 on the semantic tokens.

Rectified flow (SAMA.md 1): ``x_t = (1 - t) x0 + t noise``, the model predicts the velocity
``noise - x0``. The semantic tokens of the anchor frames are noised with the **same** ``t`` as
the target latents and denoised jointly (SAMA.md 2). ``L = L_FM + w_sem * L_sem`` with
``w_sem = 0.1``.

Timesteps. ``t`` is drawn per sample from ``(seed, sample_id, epoch, "flow")`` (rule 6), so a
sample's noise and timestep do not depend on which rank or batch it lands in: that is what
makes resume exact and distributed runs rank-count independent. The default is uniform ``t``
then the shift ``t' = s t / (1 + (s - 1) t)`` with ``s = 5``: the continuous form of
DiffSynth-Studio's Wan training draw (``FlowMatchScheduler("Wan")``, ``set_timesteps(1000,
training=True)``, then one of the 1000 grid points ``shift(linspace(1, 0, 1001)[:-1])``
uniformly), on which SAMA's release builds; it is also the inference shift of SAMA.md 5.
Logit-normal (SD3) is offered as an option.

Loss weighting (``flow.loss_weighting``, open: SAMA's training loss is unreleased). DiffSynth
multiplies each sample's loss by ``scheduler.training_weight(t)``: on its grid of timesteps
``x = 1000 sigma``, ``y = exp(-2 ((x - 500) / 1000)^2)``, ``w = (y - min y) * 1000 / sum(y - min
y)``, looked up at the grid point nearest ``t`` (about 1.9 at t = 0.36, 0.07 at t = 0.99 with
shift 5; modelscope/DiffSynth-Studio ``diffsynth/diffusion/flow_match.py``,
``set_training_weight``). ``diffsynth`` applies exactly that to the whole per-sample loss
(``L_FM + 0.1 L_sem``); ``none`` (default) weights every ``t`` the same.

Semantic target (SAMA.md 2, open): ``"velocity"`` (default) regresses the head on
``noise_sem - anchors`` because the released sampler steps the head output as a velocity with
the same scheduler as the latents; ``"clean"`` regresses the clean SigLIP tokens instead. The
SigLIP tokens are used exactly as stored (no extra normalisation; the build records its own in
the shard provenance).

Shape legend: B batch, C latent channels, T/H/W latent frames/height/width, N semantic tokens
(anchors x 65), S SigLIP width, L text tokens, D text width.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from sama.config import check
from sama.rng import torch_generator

WAN_TIMESTEP_SCALE = 1000.0  # Wan's DiT takes t * 1000


@dataclass
class FlowConfig:
    """How training timesteps are drawn (SAMA.md 1; choice recorded in the module docstring)."""

    sampling: Literal["uniform", "logit_normal"] = "uniform"
    shift: float = 5.0  # t' = s t / (1 + (s-1) t); 1 = no shift
    logit_mean: float = 0.0  # logit_normal only
    logit_std: float = 1.0  # logit_normal only
    t_min: float = 0.0  # clamp of the final t (after the shift)
    t_max: float = 1.0
    loss_weighting: Literal["none", "diffsynth"] = "none"  # see the module docstring

    def validate(self) -> None:
        check(self.shift > 0, f"flow.shift must be > 0 (Wan trains with 5), got {self.shift}")
        check(self.logit_std > 0, f"flow.logit_std must be > 0, got {self.logit_std}")
        check(
            0.0 <= self.t_min < self.t_max <= 1.0,
            f"flow.t_min/t_max must satisfy 0 <= t_min < t_max <= 1, got {self.t_min}, {self.t_max}",
        )


def shift_timesteps(t: torch.Tensor, shift: float) -> torch.Tensor:
    """Wan / SD3 timestep shift ``s t / (1 + (s - 1) t)``; maps [0, 1] onto [0, 1]."""
    return shift * t / (1.0 + (shift - 1.0) * t)


DIFFSYNTH_STEPS = 1000  # DiffSynth's set_timesteps(1000, training=True)


def diffsynth_grid(shift: float) -> tuple[torch.Tensor, torch.Tensor]:
    """DiffSynth's Wan training grid: ``(timesteps on the 0..1000 scale, training weights)``,
    computed as its ``set_timesteps_wan`` + ``set_training_weight`` do (float32)."""
    sigmas = torch.linspace(1.0, 0.0, DIFFSYNTH_STEPS + 1)[:-1]
    sigmas = shift * sigmas / (1 + (shift - 1) * sigmas)
    x = sigmas * WAN_TIMESTEP_SCALE
    y = torch.exp(-2 * ((x - DIFFSYNTH_STEPS / 2) / DIFFSYNTH_STEPS) ** 2)
    y_shifted = y - y.min()
    return x, y_shifted * (DIFFSYNTH_STEPS / y_shifted.sum())


def loss_weight(cfg: FlowConfig, t_B: torch.Tensor) -> torch.Tensor:
    """Per-sample loss weight for ``t_B`` in [0, 1] (float32, shape (B,))."""
    if cfg.loss_weighting == "none":
        return torch.ones(t_B.shape, dtype=torch.float32)
    timesteps, weights = diffsynth_grid(cfg.shift)
    nearest = (timesteps[None, :] - t_B.float().cpu()[:, None] * WAN_TIMESTEP_SCALE).abs()
    return weights[nearest.argmin(dim=1)]


def sample_timestep(cfg: FlowConfig, generator: torch.Generator) -> float:
    """One training ``t`` in [t_min, t_max] from ``generator`` (CPU)."""
    if cfg.sampling == "uniform":
        u = torch.rand((), generator=generator, dtype=torch.float64)
    else:
        z = torch.randn((), generator=generator, dtype=torch.float64)
        u = torch.sigmoid(cfg.logit_mean + cfg.logit_std * z)
    t = shift_timesteps(u, cfg.shift)
    return float(t.clamp(cfg.t_min, cfg.t_max))


@dataclass
class SampleNoise:
    """A sample's training randomness: its timestep and its noise for latents and anchors."""

    t: float
    latent_CTHW: torch.Tensor
    semantic_NS: torch.Tensor | None


def sample_noise(
    cfg: FlowConfig,
    seed: int,
    sample_id: object,
    epoch: int,
    latent_shape: tuple[int, ...],
    semantic_shape: tuple[int, ...] | None,
) -> SampleNoise:
    """Timestep and Gaussian noise of one sample, reproducible from ``(seed, sample_id, epoch)``."""
    g = torch_generator(seed, sample_id, epoch, "flow")
    t = sample_timestep(cfg, g)
    latent = torch.randn(latent_shape, generator=g)
    semantic = None if semantic_shape is None else torch.randn(semantic_shape, generator=g)
    return SampleNoise(t, latent, semantic)


def add_noise(clean: torch.Tensor, noise: torch.Tensor, t_B: torch.Tensor) -> torch.Tensor:
    """``(1 - t) clean + t noise`` with one ``t`` per sample (broadcast over the other axes)."""
    t = t_B.to(clean.dtype).reshape(-1, *([1] * (clean.ndim - 1)))
    return (1.0 - t) * clean + t * noise


@dataclass
class LossTerms:
    """Per-sample loss terms (float32, shape (B,)); ``total`` = weight * (fm + w_sem * sem)."""

    fm_B: torch.Tensor
    sem_B: torch.Tensor
    total_B: torch.Tensor


def sama_loss(
    model: torch.nn.Module,
    target_BCTHW: torch.Tensor,
    text_BLD: torch.Tensor,
    text_mask_BL: torch.Tensor | None,
    t_B: torch.Tensor,
    noise_BCTHW: torch.Tensor,
    source_BCTHW: torch.Tensor | None = None,
    anchors_BNS: torch.Tensor | None = None,
    semantic_noise_BNS: torch.Tensor | None = None,
    sem_weight: float = 0.1,
    sem_target: Literal["velocity", "clean"] = "velocity",
    weight_B: torch.Tensor | None = None,
) -> LossTerms:
    """Run ``model`` on one shape-homogeneous batch and return its per-sample losses.

    ``model`` is a ``SamaTransformer`` (or its DDP/FSDP wrapper): ``model(noisy_target,
    timestep, text, source, semantic_noisy, mask) -> (velocity, semantic_pred | None)``.
    ``weight_B`` (``loss_weight``) scales ``total`` only; ``fm`` and ``sem`` stay unweighted.
    """
    noisy_BCTHW = add_noise(target_BCTHW, noise_BCTHW, t_B)
    semantic_noisy_BNS = None
    if anchors_BNS is not None:
        if semantic_noise_BNS is None:
            raise ValueError("sama_loss: anchors_BNS given without semantic_noise_BNS")
        semantic_noisy_BNS = add_noise(anchors_BNS, semantic_noise_BNS, t_B)  # same t (SAMA.md 2)
    velocity_BCTHW, semantic_pred_BNS = model(
        noisy_BCTHW,
        t_B * WAN_TIMESTEP_SCALE,
        text_BLD,
        source_BCTHW,
        semantic_noisy_BNS,
        text_mask_BL,
    )
    target_velocity = (noise_BCTHW - target_BCTHW).float()
    fm_B = (velocity_BCTHW.float() - target_velocity).pow(2).flatten(1).mean(1)
    if semantic_pred_BNS is None:
        sem_B = torch.zeros_like(fm_B)
    else:
        if sem_target == "velocity":
            sem_goal = semantic_noise_BNS - anchors_BNS
        else:
            sem_goal = anchors_BNS
        sem_B = (semantic_pred_BNS.float() - sem_goal.float()).abs().flatten(1).mean(1)
    total_B = fm_B + sem_weight * sem_B
    if weight_B is not None:
        total_B = total_B * weight_B.to(total_B.device)
    return LossTerms(fm_B, sem_B, total_B)


def semantic_velocity(
    semantic_pred_BNS: torch.Tensor,
    semantic_noisy_BNS: torch.Tensor,
    t_B: torch.Tensor,
    sem_target: Literal["velocity", "clean"],
) -> torch.Tensor:
    """The head output as a velocity, whatever it was trained on (for the sampler)."""
    if sem_target == "velocity":
        return semantic_pred_BNS
    # clean x0 -> velocity: v = (x_t - x0) / t  (x_t = x0 + t v)
    t = t_B.reshape(-1, 1, 1).clamp_min(1e-4).to(semantic_pred_BNS.dtype)
    return (semantic_noisy_BNS - semantic_pred_BNS) / t
