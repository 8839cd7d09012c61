"""Checkpoints that resume to the same loss trajectory.

A checkpoint is a directory ``OUTPUT/checkpoints/step_{step:08d}/``:

- ``model.safetensors``: every weight of the ``SamaTransformer`` (our names, float32 or the
  training dtype); ``ema.safetensors``: the float32 EMA shadow under the same names;
- ``optimizer.pt``: ``optimizer.state_dict()`` (tensors, numbers, lists only; read back with
  ``torch.load(weights_only=True)``, never unpickled as arbitrary objects);
- ``loader_rank{r}.json`` and ``rng_rank{r}.pt``: each rank's loader state and RNG states
  (torch CPU, CUDA, Python ``random``; numpy's global RNG is not used anywhere in training);
- ``state.json``: step, world size, EMA update count, config hash; ``config.yaml``: the run's
  resolved config.

The learning-rate schedule is a pure function of the step, so there is no scheduler state to
store. Weights are read only with safetensors. The directory is written under a temporary name
and renamed into place, then ``checkpoints/latest`` (a one-line file naming it) is replaced
atomically: a crash mid-save leaves the previous checkpoint as ``latest``. Rank 0 writes the
shared files; every rank writes its own loader/RNG files between two barriers, so the output
directory must be on a filesystem all ranks see.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from sama.config import config_hash, dump_config

CHECKPOINTS = "checkpoints"
LATEST = "latest"
FORMAT_VERSION = 1


@dataclass
class RankInfo:
    rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _barrier(info: RankInfo) -> None:
    if info.world_size > 1:
        torch.distributed.barrier()


def step_dir_name(step: int) -> str:
    return f"step_{step:08d}"


def _write_atomic_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".tmp-{path.name}")
    tmp.write_text(text)
    os.replace(tmp, path)


def rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _contiguous_cpu(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu").contiguous() for k, v in state.items()}


@dataclass
class CheckpointParts:
    """What one rank contributes to a checkpoint (shared parts are used on rank 0 only)."""

    step: int
    model_state: dict[str, torch.Tensor]
    ema_state: dict[str, torch.Tensor]
    ema_updates: int
    optimizer_state: dict[str, Any]
    loader_state: dict[str, Any]
    config: Any
    extra: dict[str, Any] | None = None


def save_checkpoint(
    output_dir: str | Path, parts: CheckpointParts, info: RankInfo, keep_last: int = 0
) -> Path:
    """Write ``OUTPUT/checkpoints/step_N`` atomically and point ``latest`` at it (collective)."""
    root = Path(output_dir) / CHECKPOINTS
    final = root / step_dir_name(parts.step)
    tmp = root / f".tmp-{final.name}"
    if info.is_main:
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
    _barrier(info)
    torch.save(rng_state(), tmp / f"rng_rank{info.rank}.pt")
    (tmp / f"loader_rank{info.rank}.json").write_text(json.dumps(parts.loader_state))
    if info.is_main:
        save_file(_contiguous_cpu(parts.model_state), str(tmp / "model.safetensors"))
        save_file(_contiguous_cpu(parts.ema_state), str(tmp / "ema.safetensors"))
        torch.save(parts.optimizer_state, tmp / "optimizer.pt")
        dump_config(parts.config, tmp / "config.yaml")
        state = {
            "format": FORMAT_VERSION,
            "step": parts.step,
            "world_size": info.world_size,
            "ema_updates": parts.ema_updates,
            "config_hash": config_hash(parts.config),
            **(parts.extra or {}),
        }
        (tmp / "state.json").write_text(json.dumps(state, indent=2) + "\n")
    _barrier(info)
    if info.is_main:
        if final.exists():  # a re-run reached the same step again: replace it
            shutil.rmtree(final)
        os.replace(tmp, final)
        _write_atomic_text(root / LATEST, final.name + "\n")
        _prune(root, keep_last)
    _barrier(info)
    return final


def _prune(root: Path, keep_last: int) -> None:
    if keep_last <= 0:
        return
    steps = sorted(p for p in root.glob("step_*") if p.is_dir())
    for old in steps[:-keep_last]:
        shutil.rmtree(old)


def latest_checkpoint(path: str | Path) -> Path | None:
    """The checkpoint named by ``PATH/checkpoints/latest`` (``PATH`` may also be a run's
    ``checkpoints`` directory or a ``step_N`` directory itself); None if there is none."""
    p = Path(path)
    if (p / "state.json").is_file():
        return p
    for root in (p / CHECKPOINTS, p):
        pointer = root / LATEST
        if pointer.is_file():
            target = root / pointer.read_text().strip()
            if (target / "state.json").is_file():
                return target
    return None


def read_state(ckpt: Path) -> dict[str, Any]:
    return json.loads((ckpt / "state.json").read_text())


def load_weights(ckpt: Path, which: str = "model") -> dict[str, torch.Tensor]:
    """``model`` or ``ema`` weights of a checkpoint (safetensors only)."""
    if which not in ("model", "ema"):
        raise ValueError(f"which must be 'model' or 'ema', got {which!r}")
    return load_file(str(ckpt / f"{which}.safetensors"))


def load_optimizer_state(ckpt: Path, map_location: str | torch.device = "cpu") -> dict:
    return torch.load(ckpt / "optimizer.pt", map_location=map_location, weights_only=True)


def load_rank_state(ckpt: Path, info: RankInfo) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(loader_state, rng_state)`` of this rank; the world size must match the checkpoint's."""
    saved = read_state(ckpt)["world_size"]
    if saved != info.world_size:
        raise ValueError(
            f"{ckpt} was written by {saved} ranks but this run has {info.world_size}; exact "
            "resume needs the same world size (or start a new run with init_from=...)"
        )
    loader = json.loads((ckpt / f"loader_rank{info.rank}.json").read_text())
    rng = torch.load(ckpt / f"rng_rank{info.rank}.pt", weights_only=True)
    return loader, rng
