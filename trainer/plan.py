"""``sama train CONFIG --plan`` and the start-up check: the memory estimate of a config
(trainer/memory.py) against the GPU, and which knobs bring it under.

``--plan`` needs no data and no GPU: the model comes from its config (the released Wan2.1
configs are known by id, so nothing is downloaded), the sample sizes from ``plan.*`` (the
paper's 81x480x832 by default), the world size from ``plan.world_size``. A real start plans
for the largest buckets actually in the data on its own world size, and on CUDA refuses to
load anything when the estimate exceeds the device's memory (``plan.enforce``). When a plan
does not fit, each single change that lowers it is listed with the total it gives: one video
per micro-batch, gradient checkpointing, activation offload, context parallelism, FSDP, more
GPUs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from sama.config import check
from trainer.memory import (
    GIB,
    VAE_TIME,
    DiTDims,
    Estimate,
    Sample,
    Setup,
    dit_dims,
    estimate,
    latent_tokens,
)

if TYPE_CHECKING:
    from trainer.config import TrainConfig

# Wan2.1 DiT configs of the released diffusers repos (their transformer/config.json), so that a
# plan for the paper's model needs no download.
KNOWN_DIT_CONFIGS = {
    "Wan-AI/Wan2.1-T2V-14B-Diffusers": dict(
        num_attention_heads=40, attention_head_dim=128, ffn_dim=13824, num_layers=40
    ),
    "Wan-AI/Wan2.1-T2V-1.3B-Diffusers": dict(
        num_attention_heads=12, attention_head_dim=128, ffn_dim=8960, num_layers=30
    ),
}
WAN_COMMON = dict(
    patch_size=(1, 2, 2),
    in_channels=16,
    out_channels=16,
    text_dim=4096,
    freq_dim=256,
    cross_attn_norm=True,
    qk_norm="rms_norm_across_heads",
    eps=1e-6,
    rope_max_seq_len=1024,
)


@dataclass
class PlanConfig:
    """What ``--plan`` plans for; a real start checks the same estimate on its own GPUs."""

    gpu_memory_gb: float = 80.0  # GiB per GPU for --plan (a real start uses the device's own)
    world_size: int = 0  # GPUs for --plan; 0 = WORLD_SIZE of the launch, else 1
    reserve_gb: float = 4.0  # CUDA context, NCCL buffers, fragmentation
    enforce: bool = True  # a real start on CUDA refuses a plan that does not fit
    video_frames: int = 81  # pixel frames of the largest video sample (SAMA.md 1)
    video_height: int = 480
    video_width: int = 832
    image_height: int = 480
    image_width: int = 832
    anchors: int = 1  # anchor frames per sample (SAMA.md 2: N = 1)

    def validate(self) -> None:
        check(self.gpu_memory_gb > 0, f"plan.gpu_memory_gb must be > 0, got {self.gpu_memory_gb}")
        check(self.world_size >= 0, f"plan.world_size must be >= 0, got {self.world_size}")
        check(self.reserve_gb >= 0, f"plan.reserve_gb must be >= 0, got {self.reserve_gb}")
        check(
            self.video_frames % VAE_TIME == 1,
            f"plan.video_frames must be 4k+1 (SAMA.md 1), got {self.video_frames}",
        )
        for name in ("video_height", "video_width", "image_height", "image_width"):
            value = getattr(self, name)
            check(
                value > 0 and value % 16 == 0, f"plan.{name} must be a multiple of 16, got {value}"
            )
        check(self.anchors >= 1, f"plan.anchors must be >= 1, got {self.anchors}")


def plan_world_size(cfg_world: int) -> int:
    """``plan.world_size``, else the launch's ``WORLD_SIZE``, else 1."""
    return cfg_world or int(os.environ.get("WORLD_SIZE", "1"))


# ---- from a TrainConfig ----------------------------------------------------------------------


def dit_config_of(cfg: TrainConfig) -> dict:
    """The DiT config: a known release by id (no download), else its config.json."""
    from pathlib import Path

    model_id = cfg.dit.model_id
    if model_id in KNOWN_DIT_CONFIGS and not Path(model_id).exists():
        return {**WAN_COMMON, **KNOWN_DIT_CONFIGS[model_id]}
    from trainer.weights import load_dit_config

    return load_dit_config(cfg)


def plan_samples(cfg: TrainConfig, dims: DiTDims, keys: list | None = None) -> tuple[Sample, ...]:
    """The micro-batch shapes to plan for: the largest of each kind among ``keys`` (a real
    start: the loader's bucket keys, target/source/anchor shapes), else the ``plan.*`` video and
    image sizes with the configured batch sizes."""
    if keys:
        return tuple(_largest(cfg, dims, keys))
    p, semantic = cfg.plan, cfg.plan.anchors * cfg.dit.tokens_per_anchor
    video = latent_tokens(p.video_frames, p.video_height, p.video_width, dims.patch)
    image = latent_tokens(1, p.image_height, p.image_width, dims.patch)
    return (
        Sample("video", cfg.data.video_batch_size, 2 * video + semantic, video),
        Sample("image", cfg.data.image_batch_size, 2 * image + semantic, image),
    )


def _largest(cfg: TrainConfig, dims: DiTDims, keys: list) -> list[Sample]:
    pt, ph, pw = dims.patch

    def tokens(shape_CTHW) -> int:
        _, t, h, w = shape_CTHW
        return (t // pt) * (h // ph) * (w // pw)

    best: dict[str, Sample] = {}
    for key in keys:
        target = tokens(key.shapes[0])
        source = tokens(key.shapes[1]) if key.kind == "pair" else target  # clips: <= target
        anchors = key.shapes[-1]
        kind = "video" if key.is_video else "image"
        batch = cfg.data.video_batch_size if key.is_video else cfg.data.image_batch_size
        sample = Sample(kind, batch, target + source + anchors[0] * anchors[1], target)
        if kind not in best or sample.tokens > best[kind].tokens:
            best[kind] = sample
    return list(best.values())


def setup_of(cfg: TrainConfig, world_size: int, samples: tuple[Sample, ...]) -> Setup:
    mode = cfg.distributed
    if mode == "auto":
        mode = "ddp" if world_size > 1 else "none"
    return Setup(
        world_size=world_size,
        mode=mode,
        bf16=cfg.precision == "bf16",
        checkpointing=cfg.gradient_checkpointing,
        offload=cfg.activation_offload,
        context_parallel=cfg.context_parallel,
        samples=samples,
        reserve_gb=cfg.plan.reserve_gb,
    )


@dataclass
class Plan:
    """An estimate against a memory limit, and what to turn when it does not fit."""

    dims: DiTDims
    setup: Setup
    estimate: Estimate
    limit_gb: float
    model_id: str

    @property
    def fits(self) -> bool:
        return self.estimate.total <= self.limit_gb * GIB

    def knobs(self) -> list[str]:
        """Single changes that lower the peak, each with the total it gives."""
        s, out = self.setup, []
        video = [x for x in s.samples if x.kind == "video"]
        options: list[tuple[str, Setup]] = []
        if video and video[0].batch > 1:
            one = tuple(replace(x, batch=1) if x.kind == "video" else x for x in s.samples)
            options.append(("data.video_batch_size=1", replace(s, samples=one)))
        if not s.checkpointing:
            options.append(("gradient_checkpointing=true", replace(s, checkpointing=True)))
        elif not s.offload:
            options.append(("activation_offload=true", replace(s, offload=True)))
        for cp in (2, 4, 8):
            if cp > s.context_parallel and self.dims.heads % cp == 0:
                options.append((f"context_parallel={cp}", replace(s, context_parallel=cp)))
        if s.mode != "fsdp":
            options.append(("distributed=fsdp", replace(s, mode="fsdp")))
        else:
            need = next(
                (w for w in range(s.world_size + 1, 4097) if self._fits(replace(s, world_size=w))),
                None,
            )
            if need:
                options.append((f"{need} GPUs under FSDP (plan.world_size={need})", None))
        for name, alt in options:
            if alt is None:
                out.append(f"{name} -> fits")
                continue
            total = estimate(self.dims, alt).total / GIB
            out.append(f"{name} -> {total:.1f} GiB" + (" (fits)" if self._fits(alt) else ""))
        return out

    def _fits(self, s: Setup) -> bool:
        return estimate(self.dims, s).total <= self.limit_gb * GIB

    def lines(self) -> list[str]:
        d, s, e = self.dims, self.setup, self.estimate
        out = [
            f"memory plan: {self.model_id} ({d.total_params / 1e9:.2f}B parameters: "
            f"{d.num_layers} blocks, dim {d.dim}, ffn {d.ffn_dim}, {d.heads} heads)",
            f"  {s.world_size} rank(s), {s.mode}, {'bf16' if s.bf16 else 'fp32'}, "
            f"context_parallel {s.context_parallel}, gradient checkpointing "
            f"{'on' if s.checkpointing else 'off'}, activation offload "
            f"{'on' if s.offload else 'off'}",
        ]
        for x in s.samples:
            out.append(
                f"  {x.kind} micro-batch: {x.batch} x {x.tokens:,} tokens "
                f"({x.target_tokens:,} target)"
            )
        out.append(f"  per rank, GiB (activations of the {e.peak_kind} micro-batch):")
        out += [f"    {name:<46} {v / GIB:8.2f}" for name, v in e.items.items()]
        verdict = "fits" if self.fits else "DOES NOT FIT"
        out.append(f"    {'total':<46} {e.total / GIB:8.2f} of {self.limit_gb:g} -> {verdict}")
        out += [f"  host, per rank: {k} {v / GIB:.2f} GiB" for k, v in e.host.items()]
        return out

    def refusal(self) -> str:
        knobs = "; ".join(self.knobs()) or "none found: use a GPU with more memory"
        return (
            f"the memory plan does not fit: {self.estimate.total / GIB:.1f} GiB per rank > "
            f"{self.limit_gb:g} GiB ({self.setup.world_size} rank(s), {self.estimate.peak_kind} "
            f"micro-batch; `sama train CONFIG --plan` prints the breakdown). Knobs: {knobs}. "
            "plan.enforce=false starts anyway"
        )


def make_plan(
    cfg: TrainConfig,
    world_size: int | None = None,
    limit_gb: float | None = None,
    keys: list | None = None,
) -> Plan:
    """The plan of ``cfg`` on ``world_size`` GPUs of ``limit_gb`` (default: ``plan.*``)."""
    from sama.encoders.config import SIGLIP_ID

    siglip = cfg.dit.siglip_dim
    if not siglip:
        from trainer.bundle import siglip_width

        siglip = 1152 if cfg.siglip.model_id == SIGLIP_ID else siglip_width(cfg)
    dims = dit_dims(dit_config_of(cfg), siglip, cfg.dit.mlp_hidden)
    world = world_size or plan_world_size(cfg.plan.world_size)
    setup = setup_of(cfg, world, plan_samples(cfg, dims, keys))
    return Plan(
        dims, setup, estimate(dims, setup), limit_gb or cfg.plan.gpu_memory_gb, cfg.dit.model_id
    )
