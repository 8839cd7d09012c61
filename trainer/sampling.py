"""Validation sampling: denoise a target from the source and the prompt, decode, save a strip.

SAMA.md 5: 50 steps, timestep shift 5, CFG 5 with the source present in both branches (only
the text changes: the prompt vs the negative prompt ``[Video edit]``), semantic tokens that
start as Gaussian noise (65 x SigLIP width per anchor) and are stepped with the same scheduler
as the latents. The solver is first-order Euler on the shifted flow-matching sigmas
(``x <- x + (sigma_{i+1} - sigma_i) v``), the simplest member of the family that Wan's UniPC
sampler belongs to; at 50 steps the two agree closely, and Euler has no state to get wrong.

Shape legend: B batch, C latent channels, T/H/W latent frames/height/width, N semantic
tokens, S SigLIP width, L text tokens, D text width; pixel frames are [T, H, W, 3] uint8.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch

from sama.config import check
from trainer.inputs import free_memory, pad_text
from trainer.losses import WAN_TIMESTEP_SCALE, semantic_velocity, shift_timesteps


@dataclass
class ValidationConfig:
    """Optional sampling during training (off by default; the demo turns it on)."""

    enabled: bool = False
    every: int = 0  # steps between samples; 0 = only after the last step
    num_samples: int = 1
    steps: int = 50
    shift: float = 5.0
    guidance: float = 5.0
    negative_prompt: str = "[Video edit]"
    use_ema: bool = True
    max_frames: int = 8  # pixel frames per row of the PNG strip
    seed: int = 0

    def validate(self) -> None:
        check(self.every >= 0, f"validation.every must be >= 0, got {self.every}")
        check(self.num_samples >= 1, f"validation.num_samples must be >= 1, got {self.num_samples}")
        check(self.steps >= 1, f"validation.steps must be >= 1 (paper: 50), got {self.steps}")
        check(self.shift > 0, f"validation.shift must be > 0 (paper: 5), got {self.shift}")
        check(
            self.guidance >= 1.0,
            f"validation.guidance must be >= 1 (1 = no CFG), got {self.guidance}",
        )
        check(self.max_frames >= 1, f"validation.max_frames must be >= 1, got {self.max_frames}")


def sampling_sigmas(steps: int, shift: float) -> torch.Tensor:
    """``steps + 1`` decreasing noise levels from 1 to 0, shifted like Wan's scheduler."""
    return shift_timesteps(torch.linspace(1.0, 0.0, steps + 1, dtype=torch.float64), shift)


@dataclass
class Conditioning:
    """One branch of CFG: text embeddings (and mask) for a batch."""

    text_BLD: torch.Tensor
    mask_BL: torch.Tensor | None = None


@torch.no_grad()
def sample_edit(
    model: torch.nn.Module,
    target_shape: tuple[int, int, int, int, int],
    cond: Conditioning,
    uncond: Conditioning | None,
    source_BCTHW: torch.Tensor | None,
    num_semantic: int,
    siglip_dim: int,
    generator: torch.Generator,
    steps: int = 50,
    shift: float = 5.0,
    guidance: float = 5.0,
    sem_target: Literal["velocity", "clean"] = "velocity",
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Euler flow-matching sampler with CFG; returns (latents_BCTHW, semantic_BNS or None)."""
    device = cond.text_BLD.device
    x_BCTHW = torch.randn(target_shape, generator=generator).to(device)
    s_BNS = None
    if num_semantic:
        s_BNS = torch.randn(target_shape[0], num_semantic, siglip_dim, generator=generator).to(
            device
        )
    sigmas = sampling_sigmas(steps, shift)
    for i in range(steps):
        t_B = torch.full((target_shape[0],), float(sigmas[i]), device=device)
        v, sv = _velocity(model, x_BCTHW, s_BNS, t_B, cond, source_BCTHW, sem_target)
        if uncond is not None and guidance != 1.0:
            vu, svu = _velocity(model, x_BCTHW, s_BNS, t_B, uncond, source_BCTHW, sem_target)
            v = vu + guidance * (v - vu)
            if sv is not None:
                sv = svu + guidance * (sv - svu)
        dt = float(sigmas[i + 1] - sigmas[i])
        x_BCTHW = x_BCTHW + dt * v
        if s_BNS is not None:
            s_BNS = s_BNS + dt * sv
    return x_BCTHW, s_BNS


def _velocity(model, x_BCTHW, s_BNS, t_B, branch: Conditioning, source_BCTHW, sem_target):
    v, sem = model(
        x_BCTHW, t_B * WAN_TIMESTEP_SCALE, branch.text_BLD, source_BCTHW, s_BNS, branch.mask_BL
    )
    if sem is not None:
        sem = semantic_velocity(sem.float(), s_BNS, t_B, sem_target)
    return v.float(), sem


def frame_strip(rows: list[torch.Tensor], max_frames: int = 8):
    """Rows of uint8 frames ``[T, H, W, 3]`` -> one PIL image, ``max_frames`` columns at most.

    Rows may differ in frame count and size (an image source, a shorter sped-up source); each
    cell is pasted at its own size on a black canvas.
    """
    from PIL import Image

    picked = []
    for frames in rows:
        t = frames.shape[0]
        idx = sorted(
            {round(i * (t - 1) / max(1, max_frames - 1)) for i in range(min(t, max_frames))}
        )
        picked.append([frames[i].numpy() for i in idx])
    cell_h = max(f.shape[0] for row in picked for f in row)
    cell_w = max(f.shape[1] for row in picked for f in row)
    cols = max(len(row) for row in picked)
    canvas = Image.new("RGB", (cols * cell_w, len(picked) * cell_h))
    for r, row in enumerate(picked):
        for c, frame in enumerate(row):
            canvas.paste(Image.fromarray(frame), (c * cell_w, r * cell_h))
    return canvas


def save_strip(path: str | Path, rows: list[torch.Tensor], max_frames: int = 8) -> Path:
    """Write ``rows`` (source / sample / target frames) as one PNG; returns the path."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    frame_strip(rows, max_frames).save(out)
    return out


class Validator:
    """Samples fixed validation inputs during training and writes PNG strips + a latent MSE.

    The inputs are the first ``num_samples`` samples of a fresh single-process loader's first
    batch (same sources, same per-sample transform), so they are the same on every run and
    after every resume. Rows of a strip: source (if any), sample, target, decoded by the VAE.
    Text is padded to ``text_pad_tokens`` exactly as in training (Wan's text embedder maps the
    zero padding to non-zero tokens that the unmasked cross-attention sees, so the padded
    length is part of the conditioning). The samples are split across data-parallel ranks; the
    VAE is loaded for writing and freed afterwards.
    """

    def __init__(
        self,
        cfg: ValidationConfig,
        out_dir: Path,
        vae_cfg,
        sem_target: str,
        siglip_dim: int,
        autocast,
        text_pad_tokens: int,
    ) -> None:
        self.cfg, self.out_dir, self.vae_cfg = cfg, Path(out_dir), vae_cfg
        self.sem_target, self.siglip_dim, self.autocast = sem_target, siglip_dim, autocast
        self.text_pad_tokens = text_pad_tokens
        self.samples: list[dict] | None = None
        self.vae = None

    def prepare(self, data_cfg, expected: dict | None, transform) -> None:
        import dataclasses

        from trainer.data import StreamingLoader

        cfg = dataclasses.replace(data_cfg, num_workers=0, prefetch=1)
        loader = StreamingLoader(cfg, expected_provenance=expected, transform=transform)
        batch = next(iter(loader))
        n = min(self.cfg.num_samples, len(batch["rng_id"]))
        keys = (
            "target_latents",
            "source_latents",
            "anchor_tokens",
            "prompt",
            "text_embed",
            "rng_id",
        )
        self.samples = [
            {k: batch[k][i] if batch.get(k) is not None else None for k in keys} for i in range(n)
        ]

    def conditioning(
        self, s: dict, text, device: torch.device
    ) -> tuple[Conditioning, Conditioning]:
        """Prompt and negative prompt, each padded to ``text_pad_tokens`` as in training."""
        neg = text.embed([self.cfg.negative_prompt])[0]
        embed = s["text_embed"] if s["text_embed"] is not None else text.embed([s["prompt"]])[0]
        cond = Conditioning(*[x.to(device) for x in pad_text([embed], self.text_pad_tokens)])
        uncond = Conditioning(*[x.to(device) for x in pad_text([neg], self.text_pad_tokens)])
        return cond, uncond

    @torch.no_grad()
    def run(
        self,
        model: torch.nn.Module,
        step: int,
        text,
        device: torch.device,
        write: bool,
        rank: int = 0,
        world: int = 1,
        lockstep: bool = False,
    ) -> tuple[float, int]:
        """Sample this rank's share (samples ``rank, rank + world, ...``) with ``model``; write
        their strips when ``write``. ``lockstep`` (FSDP, context parallelism: every forward
        is a collective) makes every rank run as many samples as the busiest one, repeating
        its first sample unscored. Returns ``(sum of latent MSEs, samples scored)``."""
        from sama.rng import torch_generator

        assert self.samples is not None, "call prepare() first"
        mine = list(range(rank, len(self.samples), world))
        rounds = -(-len(self.samples) // world) if lockstep else len(mine)
        total, count = 0.0, 0
        for j in range(rounds):
            i = mine[j] if j < len(mine) else (mine or [0])[0]
            s = self.samples[i]
            cond, uncond = self.conditioning(s, text, device)
            target = s["target_latents"][None].float()
            source = None if s["source_latents"] is None else s["source_latents"][None].to(device)
            g = torch_generator(self.cfg.seed, s["rng_id"], 0, "validation")
            with self.autocast():
                latents, _ = sample_edit(
                    model,
                    tuple(target.shape),
                    cond,
                    uncond,
                    source,
                    s["anchor_tokens"].flatten(0, 1).shape[0],
                    self.siglip_dim,
                    g,
                    self.cfg.steps,
                    self.cfg.shift,
                    self.cfg.guidance,
                    self.sem_target,
                )
            if j >= len(mine):
                continue
            latents = latents.float().cpu()
            total, count = total + float((latents - target).pow(2).mean()), count + 1
            if write:
                self._write(step, i, latents[0], s)
        self.release()
        return total, count

    def release(self) -> None:
        """Free the VAE loaded for writing (it is reloaded at the next validation)."""
        if self.vae is not None:
            self.vae = None
            free_memory()

    def _write(self, step: int, i: int, latents_CTHW: torch.Tensor, s: dict) -> None:
        if self.vae is None:
            from sama.encoders.vae import WanVAE

            self.vae = WanVAE.load(self.vae_cfg)
        rows = (
            [self.vae.decode(s["source_latents"].float())]
            if s["source_latents"] is not None
            else []
        )
        rows += [self.vae.decode(latents_CTHW), self.vae.decode(s["target_latents"].float())]
        save_strip(self.out_dir / f"step_{step:08d}_{i}.png", rows, self.cfg.max_frames)
