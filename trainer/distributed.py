"""Process group, device and model wrapping for ``torchrun`` (DDP or FSDP), and full state dicts.

- ``none``: one process. ``ddp``: ``DistributedDataParallel``, every rank holds the whole model
  (fine up to a few billion parameters). ``fsdp``: FSDP2 ``fully_shard`` on every DiT block and
  then the whole model, parameters/gradients/optimizer state sharded across ranks, which is what
  the 14B DiT needs (bf16 compute via ``MixedPrecisionPolicy``, fp32 master weights and
  gradient reduction). ``auto``: ``ddp`` when ``torchrun`` started more than one process.
- The backend is ``nccl`` on CUDA and ``gloo`` on CPU (the tests run 2 CPU processes).
- Checkpoints always hold *full* (unsharded) tensors under the unwrapped module's names, so a
  run can resume or initialise with a different strategy; ``full_*`` / ``load_full_*`` hide the
  difference (under FSDP they are collectives: every rank must call them).
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from sama.errors import ConfigError
from trainer.checkpoint import RankInfo


@dataclass
class Dist(RankInfo):
    local_rank: int = 0
    mode: str = "none"  # "none" | "ddp" | "fsdp"
    device: torch.device = torch.device("cpu")

    def barrier(self) -> None:
        if self.world_size > 1:
            dist.barrier()

    def all_reduce_mean(self, values: list[float]) -> list[float]:
        if self.world_size == 1:
            return values
        t = torch.tensor(values, dtype=torch.float64, device=self._comm_device())
        dist.all_reduce(t)
        return (t / self.world_size).tolist()

    def all_reduce_max(self, value: int) -> int:
        if self.world_size == 1:
            return value
        t = torch.tensor([value], dtype=torch.int64, device=self._comm_device())
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return int(t.item())

    def _comm_device(self) -> torch.device:
        return self.device if dist.get_backend() == "nccl" else torch.device("cpu")


def init_distributed(mode: str, device: str) -> Dist:
    """Read torchrun's environment, pick the device, start the process group when needed."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if mode == "auto":
        mode = "ddp" if world_size > 1 else "none"
    if mode == "none" and world_size > 1:
        raise ConfigError(
            f"distributed=none but torchrun started {world_size} processes; "
            "set distributed=ddp or distributed=fsdp"
        )
    use_cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device=cuda but no CUDA device is visible; use device=cpu or auto")
    if use_cuda:
        torch.cuda.set_device(local_rank)
        dev = torch.device("cuda", local_rank)
    else:
        dev = torch.device("cpu")
    if mode != "none" and not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo", device_id=dev if use_cuda else None)
    return Dist(rank=rank, world_size=world_size, local_rank=local_rank, mode=mode, device=dev)


def shutdown(d: Dist) -> None:
    if d.mode != "none" and dist.is_initialized():
        dist.destroy_process_group()


def wrap_model(model: nn.Module, d: Dist, bf16: bool) -> nn.Module:
    """DDP / FSDP2 wrapper around ``model`` (already on ``d.device``); ``model`` itself for none."""
    if d.mode == "ddp":
        from torch.nn.parallel import DistributedDataParallel

        ids = [d.local_rank] if d.device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=ids)
    if d.mode == "fsdp":
        from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

        # SamaTransformer returns views (the unpatchified velocity); FSDP2 warns that in-place
        # ops on them would skip its backward hook. The loss only reads them out of place.
        warnings.filterwarnings("ignore", message=r"FSDP2-wrapped module .* returned a view")
        mp = MixedPrecisionPolicy(
            param_dtype=torch.bfloat16 if bf16 else None, reduce_dtype=torch.float32
        )
        for block in model.dit.blocks:
            fully_shard(block, mp_policy=mp)
        fully_shard(model, mp_policy=mp)
    return model


def unwrap(model: nn.Module) -> nn.Module:
    """The ``SamaTransformer`` inside a DDP wrapper (FSDP2 shards in place: nothing to undo)."""
    from torch.nn.parallel import DistributedDataParallel

    return model.module if isinstance(model, DistributedDataParallel) else model


def _options(full: bool = True):
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    return StateDictOptions(full_state_dict=full, cpu_offload=True)


def full_model_state(model: nn.Module, d: Dist) -> dict[str, torch.Tensor]:
    """Unsharded weights under the unwrapped names (complete on rank 0; collective on FSDP)."""
    if d.mode == "fsdp":
        from torch.distributed.checkpoint.state_dict import get_model_state_dict

        return get_model_state_dict(model, options=_options())
    return {k: v.detach().cpu() for k, v in unwrap(model).state_dict().items()}


def load_full_model_state(model: nn.Module, state: dict[str, torch.Tensor], d: Dist) -> None:
    if d.mode == "fsdp":
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

        set_model_state_dict(model, state, options=StateDictOptions(full_state_dict=True))
        return
    unwrap(model).load_state_dict(state, strict=True)


def full_optimizer_state(model: nn.Module, opt: torch.optim.Optimizer, d: Dist) -> dict[str, Any]:
    if d.mode == "fsdp":
        from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

        return get_optimizer_state_dict(model, opt, options=_options())
    return opt.state_dict()


def load_full_optimizer_state(
    model: nn.Module, opt: torch.optim.Optimizer, state: dict[str, Any], d: Dist
) -> None:
    if d.mode == "fsdp":
        from torch.distributed.checkpoint.state_dict import (
            StateDictOptions,
            set_optimizer_state_dict,
        )

        set_optimizer_state_dict(model, opt, state, options=StateDictOptions(full_state_dict=True))
        return
    opt.load_state_dict(state)


def full_tensor(t: torch.Tensor) -> torch.Tensor:
    """A DTensor (FSDP shard) gathered to a full CPU tensor; a plain tensor moved to the CPU."""
    return (t.full_tensor() if hasattr(t, "full_tensor") else t).detach().cpu()


def like_shard(full: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """``full`` laid out like ``ref`` (sharded the same way when ``ref`` is a DTensor)."""
    if hasattr(ref, "device_mesh"):
        from torch.distributed.tensor import distribute_tensor

        return distribute_tensor(
            full.to(ref.device_mesh.device_type), ref.device_mesh, ref.placements
        )
    return full.to(ref.device)
