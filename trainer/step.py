"""One optimizer step: micro-batches, their loss weights, forward/backward, clip, step, EMA.

Gradient accumulation (``optim.global_images`` / ``global_videos``): SAMA.md 4's 448 images +
112 videos per step is ``448 / image_batch_size + 112 / video_batch_size`` micro-batches, dealt
to the data-parallel ranks ``accum`` each; the loader's Bresenham interleave (trainer/batching.py)
with ratio ``videos / all`` then gives every optimizer step exactly that mix over the ranks
(Hermite's identity over ``dp_world * accum`` micro-steps). With one video per micro-batch at
65k tokens (SAMA.md 1) this is the only way to reach the paper's batch.

Loss weights: a step's objective is ``(1 - v) * mean over its image samples + v * mean over its
video samples`` (``v = video_loss_share``; a step holding one kind gives it the whole weight),
so the mix of the paper's 28 image + 28 video batches (each batch mean weighted equally: 0.5)
survives any micro-batch size. Sample counts per kind are summed over the data-parallel ranks
before the backward, so the weights are global and exact. DDP and FSDP average gradients over
all ranks, so each rank's backward is scaled by the world size: the result is the gradient of
the global objective (context-parallel ranks each hold a part of it, trainer/context_parallel.py).

Shape legend: B batch, C latent channels, T/H/W latent frames/height/width, N semantic tokens,
S SigLIP width, L text tokens, D text width.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from sama.errors import ConfigError
from trainer.distributed import full_tensor
from trainer.inputs import Group, group_by_source, pad_text
from trainer.losses import loss_weight, sama_loss

if TYPE_CHECKING:
    from trainer.config import TrainConfig
    from trainer.train import Run


@dataclass(frozen=True)
class StepLayout:
    """Micro-batches per data-parallel rank per optimizer step, and the loader's video ratio."""

    accum: int
    video_ratio: float
    images: int = 0  # samples per step over all ranks (0: no accumulation configured)
    videos: int = 0

    def describe(self, dp_world: int) -> str:
        if not (self.images or self.videos):
            return f"one micro-batch per rank per step (video ratio {self.video_ratio:g})"
        return (
            f"{self.images} images + {self.videos} videos per step = "
            f"{dp_world * self.accum} micro-batches = {dp_world} data-parallel rank(s) x "
            f"{self.accum} (video ratio {self.video_ratio:.4g})"
        )


def step_layout(cfg: TrainConfig, dp_world: int) -> StepLayout:
    """``accum`` and the video ratio that give ``optim.global_*`` samples per step exactly."""
    o, data = cfg.optim, cfg.data
    if not (o.global_images or o.global_videos):
        return StepLayout(1, data.video_batch_ratio)
    bi, bv = data.image_batch_size, data.video_batch_size
    if o.global_images % bi or o.global_videos % bv:
        raise ConfigError(
            f"optim.global_images={o.global_images} / global_videos={o.global_videos} are not "
            f"whole numbers of micro-batches of data.image_batch_size={bi} / "
            f"video_batch_size={bv}; pick batch sizes that divide them"
        )
    ni, nv = o.global_images // bi, o.global_videos // bv
    if (ni + nv) % dp_world:
        raise ConfigError(
            f"{ni} image + {nv} video micro-batches per step do not split over {dp_world} "
            f"data-parallel rank(s); {_suggest(o.global_images, o.global_videos, bv, dp_world)}"
        )
    return StepLayout((ni + nv) // dp_world, nv / (ni + nv), o.global_images, o.global_videos)


def _suggest(images: int, videos: int, bv: int, dp: int) -> str:
    ok = [
        b
        for b in range(1, images + 1)
        if images % b == 0 and (images // b + videos // bv) % dp == 0
    ]
    if not ok:
        return "change the batch sizes, the global batch or the number of GPUs"
    b = min(ok, key=lambda x: abs(x - 16))
    total = images // b + videos // bv
    return f"e.g. data.image_batch_size={b} ({images // b} + {videos // bv} = {dp} x {total // dp})"


def is_video(batch: dict[str, Any]) -> bool:
    return int(batch["latent_frames"]) > 1


def sample_weights(run: Run, batches: list[dict[str, Any]]) -> tuple[float, float]:
    """Per-sample weight of (images, videos) in this step's global objective."""
    local = [0.0, 0.0]
    for b in batches:
        local[is_video(b)] += len(b["rng_id"])
    counts = [x / run.d.cp for x in run.d.all_reduce(local)]  # CP ranks hold the same batches
    share = run.cfg.video_loss_share
    if not counts[1]:
        share = 0.0
    elif not counts[0]:
        share = 1.0
    return ((1 - share) / counts[0] if counts[0] else 0.0, share / counts[1] if counts[1] else 0.0)


def group_text(run: Run, g: Group) -> tuple[torch.Tensor, torch.Tensor]:
    """Stored prompt embeddings, the rest encoded online; zero-padded like WanPipeline."""
    missing = [i for i, e in enumerate(g.text) if e is None]
    embeds = list(g.text)
    if missing:
        for i, e in zip(missing, run.text.embed([g.prompts[i] for i in missing]), strict=True):
            embeds[i] = e
    return pad_text(embeds, run.cfg.text_pad_tokens)


def forward_backward(run: Run, batches: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
    """Accumulate the gradient of the step's objective over its micro-batches (one forward /
    backward per source-shape group) and return this rank's weighted loss sums.

    DDP: passes before the last skip the gradient all-reduce (``no_sync``), so every rank
    synchronises exactly once per step whatever its pass count. FSDP: every forward is a
    collective, so ranks run the same number of passes, padding with zero-weight repeats.
    """
    cfg, d, dev = run.cfg, run.d, run.d.device
    w_img, w_vid = sample_weights(run, batches)
    passes = [(g, w_vid if is_video(b) else w_img) for b in batches for g in group_by_source(b)]
    total = d.all_reduce_max(len(passes)) if d.mode == "fsdp" else len(passes)
    sums = {k: torch.zeros((), device=dev) for k in ("fm", "sem", "loss")}
    for k in range(total):
        g, weight = passes[min(k, len(passes) - 1)]
        weight = weight if k < len(passes) else 0.0
        text_BLD, mask_BL = group_text(run, g)
        no_sync = d.mode == "ddp" and k < total - 1
        with run.model.no_sync() if no_sync else contextlib.nullcontext():
            with run.autocast():
                terms = sama_loss(
                    run.model,
                    g.target_BCTHW.to(dev),
                    text_BLD.to(dev),
                    mask_BL.to(dev),
                    g.t_B.to(dev),
                    g.noise_BCTHW.to(dev),
                    None if g.source_BCTHW is None else g.source_BCTHW.to(dev),
                    g.anchors_BNS.to(dev),
                    g.semantic_noise_BNS.to(dev),
                    cfg.sem_loss_weight,
                    cfg.sem_target,
                    loss_weight(cfg.flow, g.t_B),
                )
            (terms.total_B.sum() * (weight * d.world_size)).backward()
        for key, values in (("fm", terms.fm_B), ("sem", terms.sem_B), ("loss", terms.total_B)):
            sums[key] += values.detach().sum() * weight
    return sums


def optimizer_step(run: Run, lr: float) -> torch.Tensor:
    for group in run.optimizer.param_groups:
        group["lr"] = lr
    clip = run.cfg.optim.grad_clip
    norm = torch.nn.utils.clip_grad_norm_(run.model.parameters(), clip if clip else float("inf"))
    run.optimizer.step()
    run.optimizer.zero_grad(set_to_none=True)
    run.ema.update(run.core)
    return full_tensor(norm)
