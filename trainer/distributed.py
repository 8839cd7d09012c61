"""Process group, device, context-parallel groups and model wrapping for ``torchrun``.

- ``none``: one process. ``ddp``: ``DistributedDataParallel``, every rank holds the whole model
  (fine up to a few billion parameters). ``fsdp``: FSDP2 ``fully_shard`` on every DiT block and
  then the whole model, applied on the meta device before any weight exists
  (trainer/weights.py): parameters, gradients, optimizer state and EMA are sharded across
  ranks, which is what the 14B DiT needs (bf16 compute via ``MixedPrecisionPolicy``, fp32
  master weights and gradient reduction). ``auto``: ``ddp`` when ``torchrun`` started more
  than one process.
- ``context_parallel = c``: consecutive groups of ``c`` ranks split one sample's tokens
  (trainer/context_parallel.py). They see the same batches, so the loader's rank is the
  data-parallel rank ``rank // c`` of ``world_size // c``. FSDP still shards over all ranks.
- The backend is ``nccl`` on CUDA and ``gloo`` on CPU (the tests run 2 CPU processes). Async
  checkpoints get a gloo group of their own (``async_checkpoint_group``): their collectives run
  in a background thread and must not interleave with the training loop's.
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
    cp: int = 1  # context-parallel group size
    cp_group: Any = None  # this rank's group (None when cp == 1)

    @property
    def dp_rank(self) -> int:
        return self.rank // self.cp

    @property
    def dp_world(self) -> int:
        return self.world_size // self.cp

    @property
    def cp_rank(self) -> int:
        return self.rank % self.cp

    def barrier(self) -> None:
        if self.world_size > 1:
            dist.barrier()

    def all_reduce(self, values: list[float], op: str = "sum") -> list[float]:
        """Sum (or max) of ``values`` over every rank, in float64."""
        if self.world_size == 1:
            return list(values)
        t = torch.tensor(values, dtype=torch.float64, device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX if op == "max" else dist.ReduceOp.SUM)
        return t.tolist()

    def all_reduce_max(self, value: int) -> int:
        return int(self.all_reduce([float(value)], "max")[0])


def init_distributed(mode: str, device: str, context_parallel: int = 1) -> Dist:
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
    if world_size % context_parallel:
        raise ConfigError(
            f"context_parallel={context_parallel} does not divide the {world_size} ranks; use "
            f"a divisor of {world_size}"
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
    d = Dist(rank=rank, world_size=world_size, local_rank=local_rank, mode=mode, device=dev)
    if context_parallel > 1:
        d.cp = context_parallel
        for start in range(0, world_size, context_parallel):  # every rank makes every group
            group = dist.new_group(list(range(start, start + context_parallel)))
            if start <= rank < start + context_parallel:
                d.cp_group = group
    return d


def async_checkpoint_group(d: Dist):
    """A gloo group for the background thread of async checkpoints (collective: every rank
    calls it); None for one process."""
    return dist.new_group(backend="gloo") if d.mode != "none" else None


def shutdown(d: Dist) -> None:
    if d.mode != "none" and dist.is_initialized():
        dist.destroy_process_group()


def shard_model(model: nn.Module, bf16: bool) -> None:
    """FSDP2 on every DiT block, then the root (in place; works on the meta device)."""
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    # SamaTransformer returns views (the unpatchified velocity); FSDP2 warns that in-place ops
    # on them would skip its backward hook. The loss only reads them out of place.
    warnings.filterwarnings("ignore", message=r"FSDP2-wrapped module .* returned a view")
    mp = MixedPrecisionPolicy(
        param_dtype=torch.bfloat16 if bf16 else None, reduce_dtype=torch.float32
    )
    for block in model.dit.blocks:
        fully_shard(block, mp_policy=mp)
    fully_shard(model, mp_policy=mp)


def wrap_ddp(model: nn.Module, d: Dist) -> nn.Module:
    """``DistributedDataParallel`` around ``model`` (already on ``d.device``, weights loaded)."""
    from torch.nn.parallel import DistributedDataParallel

    ids = [d.local_rank] if d.device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids)


def unwrap(model: nn.Module) -> nn.Module:
    """The ``SamaTransformer`` inside a DDP wrapper (FSDP2 shards in place: nothing to undo)."""
    from torch.nn.parallel import DistributedDataParallel

    return model.module if isinstance(model, DistributedDataParallel) else model


def reshard(model: nn.Module) -> None:
    """After a no-grad forward FSDP2 leaves the root's parameters unsharded (it expects a
    backward); put them back so optimizer, EMA and state dicts see the sharded ones."""
    if hasattr(model, "reshard"):
        model.reshard()


def full_tensor(t: torch.Tensor) -> torch.Tensor:
    """A DTensor (FSDP shard) gathered to a full CPU tensor; a plain tensor moved to the CPU."""
    return (t.full_tensor() if hasattr(t, "full_tensor") else t).detach().cpu()
