"""``sama train CONFIG [a.b=value ...]``: the one SAMA training loop, stage 0 and stage 1.

Reads top to bottom (CONVENTIONS.md rule 7): config -> build (distributed, loader, memory plan,
model straight into its shards, optimizer, EMA) -> resume or initialise -> loop (micro-batches,
forward/backward per source-shape group, clip, step, EMA, log, checkpoint, validate).
Multi-process: ``torchrun --nproc_per_node N -m trainer.train CONFIG ...`` (DDP;
``distributed=fsdp`` for the 14B DiT; ``context_parallel=c`` splits each sample's tokens).
``--plan`` prints the per-rank memory estimate and exits (non-zero when it does not fit);
``--print-config`` prints the resolved config with every default.

Per step and rank, ``OUTPUT/train_log.jsonl`` (rank 0) gets the losses, learning rate, grad
norm, throughput and the data-wait share: the time the loop spent blocked on the loader over
the wall time of the logging window (the loader prefetches in background threads, so this
should stay near 0). ``log_sample_ids=true`` writes ``OUTPUT/samples_rank{r}.jsonl``.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from sama.config import config_hash, dump_config, to_dict
from sama.errors import ConfigError
from trainer import checkpoint as ckpt_io
from trainer.bundle import build_model, expected_provenance, siglip_width
from trainer.config import OptimConfig, TrainConfig, load_train_config
from trainer.data import StreamingLoader
from trainer.distributed import Dist, async_checkpoint_group, init_distributed, reshard, shutdown
from trainer.ema import EMA
from trainer.inputs import SampleTransform, TextEmbedder
from trainer.plan import make_plan
from trainer.resume import restore, save
from trainer.runlog import Window, log_record, log_samples, print_main
from trainer.sampling import Validator
from trainer.step import StepLayout, forward_backward, optimizer_step, step_layout


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
    layout: StepLayout
    ckpt: ckpt_io.Checkpointer
    step: int = 0
    history: list[dict] = field(default_factory=list)

    def autocast(self):
        bf16 = self.cfg.precision == "bf16" and self.d.mode != "fsdp"  # FSDP: MixedPrecisionPolicy
        return torch.autocast(self.d.device.type, dtype=torch.bfloat16, enabled=bf16)


def build(cfg: TrainConfig, d: Dist) -> Run:
    out = Path(cfg.output_dir)
    layout = step_layout(cfg, d.dp_world)
    cfg = dataclasses.replace(
        cfg, data=dataclasses.replace(cfg.data, video_batch_ratio=layout.video_ratio)
    )
    resume_from = ckpt_io.latest_checkpoint(out) if cfg.resume == "auto" else None
    if resume_from is not None:
        check_resumable(cfg, resume_from)
    if d.is_main:
        out.mkdir(parents=True, exist_ok=True)
        dump_config(cfg, out / "config.yaml")
    torch.manual_seed(cfg.seed)  # nothing should draw from it; seeded anyway
    expected = expected_provenance(cfg) if cfg.check_provenance else None
    loader = StreamingLoader(
        cfg.data, rank=d.dp_rank, world_size=d.dp_world, expected_provenance=expected
    )
    check_memory(cfg, d, loader)
    core, model, report = build_model(cfg, siglip_width(cfg), d, fill=resume_from is None)
    if report is not None and cfg.init_from:
        for line in report.lines():
            print_main(d, line)
        if d.is_main:
            report.write(out / "init_from.json")
    o = cfg.optim
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=o.lr, betas=o.betas, eps=o.eps, weight_decay=o.weight_decay
    )
    transform = make_transform(cfg, loader)
    loader.transform = transform
    run = Run(
        cfg,
        d,
        model,
        core,
        optimizer,
        EMA(core, cfg.ema_decay),
        loader,
        TextEmbedder(cfg.text_encoder),
        expected,
        transform,
        layout,
        ckpt_io.Checkpointer(
            out,
            d,
            cfg.keep_checkpoints,
            cfg.async_checkpoint,
            distributed=d.mode != "none",
            async_group=async_checkpoint_group(d) if cfg.async_checkpoint else None,
        ),
    )
    print_main(d, f"global batch: {layout.describe(d.dp_world)}")
    if resume_from is not None:
        restore(run, resume_from)
        print_main(d, f"resumed from {resume_from} at step {run.step}")
    return run


def check_memory(cfg: TrainConfig, d: Dist, loader: StreamingLoader) -> None:
    """The ``--plan`` estimate for the largest buckets in the data; on CUDA a plan that does
    not fit the device stops the run before any weight is read (unless plan.enforce=false)."""
    cuda = d.device.type == "cuda"
    limit = torch.cuda.get_device_properties(d.device).total_memory / 1024**3 if cuda else None
    plan = make_plan(cfg, d.world_size, limit, loader.keys)
    peak = plan.estimate.total / 1024**3
    where = f"of {limit:.0f} GiB" if cuda else "on a GPU (not checked on the CPU)"
    print_main(
        d,
        f"memory plan: {peak:.2f} GiB per rank {where} (peak: {plan.estimate.peak_kind} "
        "micro-batch; `sama train CONFIG --plan` for the breakdown)",
    )
    if cuda and cfg.plan.enforce and not plan.fits:
        raise ConfigError(plan.refusal())


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


# ---- validation ----------------------------------------------------------------------------


def validate(run: Run, validator: Validator) -> dict[str, float]:
    """Sample with the EMA weights (or the live ones), the samples split over data-parallel
    ranks; encoders loaded for it are freed afterwards."""
    d, core = run.d, run.core
    had_encoder = run.text.encoder is not None
    backup = None
    if validator.cfg.use_ema:
        backup = [p.detach().clone() for p in core.parameters()]
        run.ema.copy_to(core)
    core.eval()
    total, count = validator.run(
        core,
        run.step,
        run.text,
        d.device,
        write=d.cp_rank == 0,
        rank=d.dp_rank,
        world=d.dp_world,
        lockstep=d.mode == "fsdp" or d.cp > 1,
    )
    reshard(core)
    core.train()
    if backup is not None:
        with torch.no_grad():
            for p, b in zip(core.parameters(), backup, strict=True):
                p.copy_(b)
    if not had_encoder:
        run.text.release()
    total, count = d.all_reduce([total, float(count)])
    return {"val_latent_mse": total / count} if count else {}


# ---- the loop ------------------------------------------------------------------------------


def train(cfg: TrainConfig) -> dict[str, Any]:
    """Run training as configured; returns the logged records and the last checkpoint."""
    d = init_distributed(cfg.distributed, cfg.device, cfg.context_parallel)
    try:
        return _train(cfg, d)
    finally:
        shutdown(d)


def _make_validator(run: Run) -> Validator | None:
    cfg = run.cfg
    if not cfg.validation.enabled:
        return None
    validator = Validator(
        cfg.validation,
        Path(cfg.output_dir) / "validation",
        cfg.vae,
        cfg.sem_target,
        run.core.config.siglip_dim,
        run.autocast,
        cfg.text_pad_tokens,
    )
    validator.prepare(cfg.data, run.expected, run.transform)
    return validator


def _train(cfg: TrainConfig, d: Dist) -> dict[str, Any]:
    run = build(cfg, d)
    cfg = run.cfg
    print_main(
        d,
        f"sama train: stage {cfg.stage}, {d.world_size} rank(s) ({d.mode}, context parallel "
        f"{d.cp}) on {d.device}, steps {run.step}..{cfg.steps}, output {cfg.output_dir}",
    )
    if cfg.stage == 1 and not cfg.init_from and run.step == 0:
        print_main(
            d,
            "note: stage 1 without init_from starts from the bare Wan DiT, not from a "
            "stage-0 checkpoint (SAMA.md 4); set init_from=STAGE0_OUTPUT_DIR",
        )
    validator = _make_validator(run)
    last_ckpt = None
    run.model.train()
    batches = iter(run.loader)
    window = Window()
    while run.step < cfg.steps:
        t0 = time.perf_counter()
        micro = [next(batches) for _ in range(run.layout.accum)]
        window.wait_s += time.perf_counter() - t0
        if cfg.log_sample_ids:
            for batch in micro:
                log_samples(run, run.step, batch)
        lr = lr_at(cfg.optim, run.step, cfg.steps)
        losses = forward_backward(run, micro)
        grad_norm = optimizer_step(run, lr)
        run.step += 1
        window.losses.append(losses)
        window.samples += sum(len(b["rng_id"]) for b in micro)
        window.steps += 1
        if run.step % cfg.log_every == 0 or run.step == cfg.steps:
            record = window.report(run, run.step, lr, grad_norm)
            if not math.isfinite(record["loss"]):
                raise FloatingPointError(f"loss is {record['loss']} at step {run.step}")
            log_record(run, record)
            window = Window()
        if (cfg.ckpt_every and run.step % cfg.ckpt_every == 0) or run.step == cfg.steps:
            last_ckpt = save(run)
            print_main(
                d, f"checkpoint: {last_ckpt}" + (" (writing)" if cfg.async_checkpoint else "")
            )
        val_due = cfg.validation.every and run.step % cfg.validation.every == 0
        if validator is not None and (val_due or run.step == cfg.steps):
            result = validate(run, validator)
            if result:
                print_main(d, f"validation at step {run.step}: {result}")
    run.ckpt.wait()
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
    p.add_argument(
        "--plan",
        action="store_true",
        help="print the per-rank GPU memory estimate (plan.* sizes, plan.world_size GPUs of "
        "plan.gpu_memory_gb GiB) and exit; exit status 1 with the knobs to turn if it does not fit",
    )
    p.add_argument(
        "--print-config",
        action="store_true",
        help="print the resolved config, every default included, as YAML and exit",
    )
    args = p.parse_intermixed_args(list(sys.argv[1:] if argv is None else argv))
    if args.print_config or args.plan:
        cfg = load_train_config(args.config, args.overrides, require_data=False)
        if args.print_config:
            import yaml

            print(yaml.safe_dump(to_dict(cfg), sort_keys=False), end="")
            return 0
        return print_plan(cfg)
    train(load_train_config(args.config, args.overrides))
    return 0


def print_plan(cfg: TrainConfig) -> int:
    """``--plan``: the breakdown on stdout; what does not fit (memory, global batch) on stderr."""
    plan = make_plan(cfg)
    print("\n".join(plan.lines()))
    problems = [] if plan.fits else [plan.refusal()]
    dp_world = plan.setup.world_size // cfg.context_parallel
    try:
        print(f"  global batch: {step_layout(cfg, dp_world).describe(dp_world)}")
    except ConfigError as e:
        problems.append(str(e))
    for problem in problems:
        print(f"sama train --plan: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    try:
        sys.exit(train_main())
    except ConfigError as e:
        print(f"sama train: configuration error: {e}", file=sys.stderr)
        sys.exit(2)
