"""``sama train CONFIG [a.b=value ...]``: the one SAMA training loop, stage 0 and stage 1.

Reads top to bottom (CONVENTIONS.md rule 7): config -> build (distributed, model, optimizer,
EMA, loader) -> resume or initialise -> loop (batch, forward/backward per source-shape group,
clip, step, EMA, log, checkpoint, validate). Multi-process: ``torchrun --nproc_per_node N -m
trainer.train CONFIG ...`` (DDP; ``distributed=fsdp`` for the 14B DiT).

Per step and rank, ``OUTPUT/train_log.jsonl`` (rank 0) gets the losses, learning rate, grad
norm, throughput and the data-wait share: the time the loop spent blocked on the loader over
the wall time of the logging window (the loader prefetches in background threads, so this
should stay near 0). ``log_sample_ids=true`` writes ``OUTPUT/samples_rank{r}.jsonl``.

Shape legend: B batch, C latent channels, T/H/W latent frames/height/width, N semantic
tokens, S SigLIP width, L text tokens, D text width.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from sama.config import config_hash, dump_config
from sama.errors import ConfigError
from trainer import checkpoint as ckpt_io
from trainer.bundle import build_model, expected_provenance, init_from_checkpoint, siglip_width
from trainer.config import OptimConfig, TrainConfig, load_train_config
from trainer.data import StreamingLoader
from trainer.distributed import (
    Dist,
    full_model_state,
    full_optimizer_state,
    full_tensor,
    init_distributed,
    like_shard,
    load_full_model_state,
    load_full_optimizer_state,
    shutdown,
    wrap_model,
)
from trainer.ema import EMA
from trainer.inputs import Group, SampleTransform, TextEmbedder, group_by_source, pad_text
from trainer.losses import sama_loss
from trainer.runlog import Window, log_record, log_samples, print_main
from trainer.sampling import Validator


def lr_at(cfg: OptimConfig, step: int, total_steps: int) -> float:
    """Linear warmup over ``warmup_steps``, then constant or cosine down to ``min_lr_ratio``."""
    if cfg.warmup_steps and step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    if cfg.schedule == "constant":
        return cfg.lr
    span = max(1, total_steps - cfg.warmup_steps)
    progress = min(1.0, (step - cfg.warmup_steps) / span)
    floor = cfg.min_lr_ratio * cfg.lr
    return floor + (cfg.lr - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


# ---- build ---------------------------------------------------------------------------------


@dataclass
class Run:
    cfg: TrainConfig
    d: Dist
    model: torch.nn.Module  # DDP-wrapped or FSDP-sharded
    core: torch.nn.Module  # the SamaTransformer itself
    optimizer: torch.optim.Optimizer
    ema: EMA
    loader: StreamingLoader
    text: TextEmbedder
    expected: dict | None
    transform: SampleTransform
    step: int = 0
    history: list[dict] = field(default_factory=list)

    def autocast(self):
        bf16 = self.cfg.precision == "bf16" and self.d.mode != "fsdp"  # FSDP: MixedPrecisionPolicy
        return torch.autocast(self.d.device.type, dtype=torch.bfloat16, enabled=bf16)


def build(cfg: TrainConfig, d: Dist) -> Run:
    out = Path(cfg.output_dir)
    if d.is_main:
        out.mkdir(parents=True, exist_ok=True)
        dump_config(cfg, out / "config.yaml")
    torch.manual_seed(cfg.seed)  # nothing should draw from it; seeded anyway
    expected = expected_provenance(cfg) if cfg.check_provenance else None
    siglip_dim = siglip_width(cfg)
    core = build_model(cfg, siglip_dim)
    resume_from = ckpt_io.latest_checkpoint(out) if cfg.resume == "auto" else None
    if resume_from is not None:
        check_resumable(cfg, resume_from)
    if resume_from is None and cfg.init_from:
        found = init_from_checkpoint(core, cfg)
        print_main(d, f"initialised from {found} ({cfg.init_weights} weights)")
    core.to(d.device)
    model = wrap_model(core, d, cfg.precision == "bf16")
    o = cfg.optim
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=o.lr, betas=o.betas, eps=o.eps, weight_decay=o.weight_decay
    )
    ema = EMA(core, cfg.ema_decay)
    loader = StreamingLoader(
        cfg.data, rank=d.rank, world_size=d.world_size, expected_provenance=expected
    )
    transform = make_transform(cfg, loader)
    loader.transform = transform
    run = Run(
        cfg,
        d,
        model,
        core,
        optimizer,
        ema,
        loader,
        TextEmbedder(cfg.text_encoder),
        expected,
        transform,
    )
    if resume_from is not None:
        restore(run, resume_from)
        print_main(d, f"resumed from {resume_from} at step {run.step}")
    return run


def check_resumable(cfg: TrainConfig, path: Path) -> None:
    """Refuse to continue another stage's run; note a changed config (e.g. more steps)."""
    state = ckpt_io.read_state(path)
    if state.get("stage", cfg.stage) != cfg.stage:
        raise ConfigError(
            f"output_dir={cfg.output_dir!r} holds a stage-{state['stage']} run ({path}); "
            f"this is stage {cfg.stage}: use another output_dir (and init_from={cfg.output_dir!r} "
            "to start from it), or resume=never to train over it from scratch"
        )
    if state.get("config_hash") != config_hash(cfg):
        print(
            f"note: resuming {path} with a config that differs from the one it was saved "
            "with (see its config.yaml)",
            flush=True,
        )


def make_transform(cfg: TrainConfig, loader: StreamingLoader) -> SampleTransform:
    has_clips = any(s.kind == "clips" for s in cfg.data.sources)
    black = loader.black_latent
    needs_black = cfg.stage == 0 and has_clips and cfg.pretext.mix.get("cube_inpainting", 0) > 0
    if needs_black and black is None:
        raise ConfigError(
            "stage 0 cube inpainting needs the black-frame latent, but the shards' "
            "provenance has no `black_latent`; rebuild them, or leave cube inpainting out of "
            "the mix, e.g. pretext.mix='{none: 1, speed: 3, tube_shuffle: 4}'"
        )
    pretext = cfg.pretext if cfg.stage == 0 else None
    return SampleTransform(pretext, cfg.flow, cfg.seed, black, cfg.pretext.none_source)


# ---- checkpoints ---------------------------------------------------------------------------


def save(run: Run) -> Path:
    d, fsdp = run.d, run.d.mode == "fsdp"
    gather = fsdp or d.is_main  # FSDP gathers collectively; otherwise rank 0 holds everything
    model_state = full_model_state(run.model, d) if gather else {}
    ema_state = {n: full_tensor(t) for n, t in run.ema.state_dict().items()} if gather else {}
    opt_state = full_optimizer_state(run.model, run.optimizer, d) if gather else {}
    parts = ckpt_io.CheckpointParts(
        step=run.step,
        model_state=model_state,
        ema_state=ema_state,
        ema_updates=run.ema.num_updates,
        optimizer_state=opt_state,
        loader_state=run.loader.state_dict(),
        config=run.cfg,
        extra={"epoch": run.loader.epoch, "stage": run.cfg.stage},
    )
    return ckpt_io.save_checkpoint(run.cfg.output_dir, parts, d, run.cfg.keep_checkpoints)


def restore(run: Run, path: Path) -> None:
    d = run.d
    state = ckpt_io.read_state(path)
    load_full_model_state(run.model, ckpt_io.load_weights(path, "model"), d)
    shadow = dict(zip(run.ema.names, run.ema.shadow, strict=True))
    ema = {n: like_shard(t, shadow[n]) for n, t in ckpt_io.load_weights(path, "ema").items()}
    run.ema.load_state_dict(ema, state["ema_updates"])
    where = "cpu" if d.mode == "fsdp" else d.device
    opt_state = ckpt_io.load_optimizer_state(path, map_location=where)
    load_full_optimizer_state(run.model, run.optimizer, opt_state, d)
    loader_state, rng = ckpt_io.load_rank_state(path, d)
    run.loader.load_state_dict(loader_state)
    ckpt_io.set_rng_state(rng)
    run.step = int(state["step"])


# ---- one step ------------------------------------------------------------------------------


def group_text(run: Run, g: Group) -> tuple[torch.Tensor, torch.Tensor]:
    """Stored prompt embeddings, the rest encoded online; zero-padded like WanPipeline."""
    missing = [i for i, e in enumerate(g.text) if e is None]
    embeds = list(g.text)
    if missing:
        for i, e in zip(missing, run.text.embed([g.prompts[i] for i in missing]), strict=True):
            embeds[i] = e
    return pad_text(embeds, run.cfg.text_pad_tokens)


def forward_backward(run: Run, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
    """Accumulate the gradient of the batch-mean loss; one forward/backward per source group.

    DDP: groups before the last skip the gradient all-reduce (``no_sync``), so every rank
    synchronises exactly once per step whatever its group count. FSDP: every forward is a
    collective, so ranks run the same number of forwards, padding with zero-weight repeats.
    """
    cfg, d, dev = run.cfg, run.d, run.d.device
    groups = group_by_source(batch)
    batch_size = sum(len(g.indices) for g in groups)
    passes = d.all_reduce_max(len(groups)) if d.mode == "fsdp" else len(groups)
    sums = {"fm": torch.zeros((), device=dev), "sem": torch.zeros((), device=dev)}
    for k in range(passes):
        g = groups[min(k, len(groups) - 1)]
        weight = 1.0 / batch_size if k < len(groups) else 0.0
        text_BLD, mask_BL = group_text(run, g)
        no_sync = d.mode == "ddp" and k < passes - 1
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
                )
            (terms.total_B.sum() * weight).backward()
        if weight:
            sums["fm"] += terms.fm_B.detach().sum() / batch_size
            sums["sem"] += terms.sem_B.detach().sum() / batch_size
    sums["loss"] = sums["fm"] + cfg.sem_loss_weight * sums["sem"]
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


# ---- logging -------------------------------------------------------------------------------
# ---- validation ----------------------------------------------------------------------------


def validate(run: Run, validator: Validator) -> dict[str, float]:
    """Sample with the EMA weights (or the live ones) on rank 0 (all ranks under FSDP)."""
    d, core = run.d, run.core
    participate = d.is_main or d.mode == "fsdp"
    result: dict[str, float] = {}
    if participate:
        backup = None
        if validator.cfg.use_ema:
            backup = [p.detach().clone() for p in core.parameters()]
            run.ema.copy_to(core)
        core.eval()
        model = core if d.mode != "fsdp" else run.model
        result = validator.run(model, run.step, run.text, d.device, write=d.is_main)
        core.train()
        if backup is not None:
            with torch.no_grad():
                for p, b in zip(core.parameters(), backup, strict=True):
                    p.copy_(b)
    d.barrier()
    return result


# ---- the loop ------------------------------------------------------------------------------


def train(cfg: TrainConfig) -> dict[str, Any]:
    """Run training as configured; returns the logged records and the last checkpoint."""
    d = init_distributed(cfg.distributed, cfg.device)
    try:
        return _train(cfg, d)
    finally:
        shutdown(d)


def _train(cfg: TrainConfig, d: Dist) -> dict[str, Any]:
    run = build(cfg, d)
    print_main(
        d,
        f"sama train: stage {cfg.stage}, {d.world_size} rank(s) ({d.mode}) on "
        f"{d.device}, steps {run.step}..{cfg.steps}, output {cfg.output_dir}",
    )
    if cfg.stage == 1 and not cfg.init_from and run.step == 0:
        print_main(
            d,
            "note: stage 1 without init_from starts from the bare Wan DiT, not from a "
            "stage-0 checkpoint (SAMA.md 4); set init_from=STAGE0_OUTPUT_DIR",
        )
    validator = None
    if cfg.validation.enabled:
        validator = Validator(
            cfg.validation,
            Path(cfg.output_dir) / "validation",
            cfg.vae,
            cfg.sem_target,
            run.core.config.siglip_dim,
            run.autocast,
        )
        validator.prepare(cfg.data, run.expected, run.transform)
    last_ckpt = None
    run.model.train()
    batches = iter(run.loader)
    window = Window()
    while run.step < cfg.steps:
        t0 = time.perf_counter()
        batch = next(batches)
        window.wait_s += time.perf_counter() - t0
        if cfg.log_sample_ids:
            log_samples(run, run.step, batch)
        lr = lr_at(cfg.optim, run.step, cfg.steps)
        losses = forward_backward(run, batch)
        grad_norm = optimizer_step(run, lr)
        run.step += 1
        window.losses.append(losses)
        window.samples += len(batch["rng_id"])
        window.steps += 1
        if run.step % cfg.log_every == 0 or run.step == cfg.steps:
            record = window.report(run, run.step, lr, grad_norm)
            if not math.isfinite(record["loss"]):
                raise FloatingPointError(f"loss is {record['loss']} at step {run.step}")
            log_record(run, record)
            window = Window()
        if (cfg.ckpt_every and run.step % cfg.ckpt_every == 0) or run.step == cfg.steps:
            last_ckpt = save(run)
            print_main(d, f"checkpoint: {last_ckpt}")
        val_due = cfg.validation.every and run.step % cfg.validation.every == 0
        if validator is not None and (val_due or run.step == cfg.steps):
            result = validate(run, validator)
            if result:
                print_main(d, f"validation at step {run.step}: {result}")
    return {
        "history": run.history,
        "checkpoint": str(last_ckpt) if last_ckpt else None,
        "step": run.step,
        "online_prompts": run.text.online_prompts,
    }


def train_main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="sama train",
        description="Train SAMA stage 0 / stage 1 from clip and pair shards.",
        epilog="Example: sama train configs/debug_cpu.yaml data.root=out/demo/dataset steps=20",
    )
    p.add_argument("config", help="YAML config (configs/stage0.yaml, stage1.yaml, debug_cpu.yaml)")
    p.add_argument("overrides", nargs="*", help="dotted overrides, e.g. optim.lr=1e-5")
    args = p.parse_args(list(sys.argv[1:] if argv is None else argv))
    cfg = load_train_config(args.config, args.overrides)
    train(cfg)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(train_main())
    except ConfigError as e:
        print(f"sama train: configuration error: {e}", file=sys.stderr)
        sys.exit(2)
