"""A run's state in and out of a checkpoint (trainer/checkpoint.py): what is saved, and how a
resume puts it back on any world size.

Saved: the model, EMA and AdamW tensors as they are held (FSDP shards or whole tensors) under
flat keys, each rank's loader position with the length of its epoch, its RNG states, and the
step, EMA update count, stage and micro-batches per step. A resume loads every tensor into
this run's layout (DCP reshards) and puts the loader where it stopped: exactly, on the same
data-parallel world size (CONVENTIONS.md rule 6); at the same fraction of the epoch on another
one, since a rank's batch sequence is a function of the world size (trainer/batching.py).
The learning-rate schedule is a pure function of the step: there is no scheduler state.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from trainer import checkpoint as ckpt_io
from trainer.runlog import print_main

if TYPE_CHECKING:
    from trainer.train import Run


def run_tensors(run: Run) -> dict[str, torch.Tensor]:
    """Model, EMA and optimizer tensors under flat keys (sharded as they are held)."""
    from torch.distributed.checkpoint.state_dict import (
        get_model_state_dict,
        get_optimizer_state_dict,
    )

    out = {f"model.{k}": v for k, v in get_model_state_dict(run.model).items()}
    out.update({f"ema.{k}": v for k, v in run.ema.state_dict().items()})
    for fqn, state in get_optimizer_state_dict(run.model, run.optimizer)["state"].items():
        out.update({f"optim.{fqn}.{k}": v for k, v in state.items()})
    return out


def save(run: Run) -> Path:
    rank_state = {
        "loader": run.loader.state_dict(),
        "batches_in_epoch": run.loader.batches_in_epoch(),
        "rng": ckpt_io.rng_state(),
    }
    req = ckpt_io.SaveRequest(
        step=run.step,
        tensors=run_tensors(run),
        rank_state=rank_state,
        state={
            "ema_updates": run.ema.num_updates,
            "epoch": run.loader.epoch,
            "stage": run.cfg.stage,
            "accum": run.layout.accum,
        },
        config=run.cfg,
        model_config={
            "dit": dict(run.core.dit.config),
            "sama": dataclasses.asdict(run.core.config),
        },
    )
    return run.ckpt.save(req)


def restore(run: Run, path: Path) -> None:
    """Every tensor resharded onto this run's layout; the loader continues where it stopped
    (exactly on the same data-parallel world size, else at the same fraction of the epoch)."""
    from torch.distributed.checkpoint.state_dict import (
        get_optimizer_state_dict,
        set_optimizer_state_dict,
    )

    d, state = run.d, ckpt_io.read_state(path)
    template = get_optimizer_state_dict(run.model, run.optimizer)  # state created at lr 0
    tensors = run_tensors(run)
    ckpt_io.load_tensors(path, tensors, distributed=d.mode != "none")
    for fqn, st in template["state"].items():
        template["state"][fqn] = {k: tensors[f"optim.{fqn}.{k}"] for k in st}
    set_optimizer_state_dict(run.model, run.optimizer, template)
    run.ema.num_updates = int(state["ema_updates"])
    mine = ckpt_io.read_rank_state(path, d.rank)
    loader = dict(mine["loader"])
    if loader["world_size"] != d.dp_world:
        done = loader["batches_emitted"] / max(1, mine["batches_in_epoch"])
        new_total = run.loader.batches_in_epoch(loader["epoch"])
        loader.update(rank=d.dp_rank, world_size=d.dp_world, batches_emitted=int(done * new_total))
        print_main(
            d,
            f"note: {path} was written by {loader_world(mine)} data-parallel rank(s), this run "
            f"has {d.dp_world}: the data continues at {100 * done:.1f}% of epoch "
            f"{loader['epoch']} (the exact sample order is that of the new world size)",
        )
    run.loader.load_state_dict(loader)
    if int(state["world_size"]) == d.world_size:
        ckpt_io.set_rng_state(mine["rng"])
    run.step = int(state["step"])


def loader_world(rank_state: dict) -> int:
    return int(rank_state["loader"]["world_size"])
