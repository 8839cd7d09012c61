"""Training logs: one line per logging window to stdout and ``OUTPUT/train_log.jsonl``.

Each record: step, mean losses (``loss`` = ``fm`` + w * ``sem``) over the window and over the
ranks, learning rate, grad norm, samples/s (all ranks), seconds per step, and the data-wait
share: time blocked in ``next(loader)`` over the window's wall time (on CUDA the window ends
with a synchronize, so the wall time is the real one). ``log_samples`` writes each step's
sample ids, epoch and pretext tasks per rank (``samples_rank{r}.jsonl``).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from trainer.distributed import Dist

if TYPE_CHECKING:
    from trainer.train import Run


def print_main(d: Dist, text: str) -> None:
    if d.is_main:
        print(text, flush=True)


class Window:
    """Sums over one logging window: step losses, samples, time blocked on data."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.wait_s = 0.0
        self.samples = 0
        self.steps = 0
        self.losses: list[dict[str, torch.Tensor]] = []

    def report(self, run: Run, step: int, lr: float, grad_norm: torch.Tensor) -> dict:
        if run.d.device.type == "cuda":
            torch.cuda.synchronize(run.d.device)
        wall = time.perf_counter() - self.start
        keys = ("loss", "fm", "sem")
        local = [sum(float(x[k]) for x in self.losses) / len(self.losses) for k in keys]
        mean = run.d.all_reduce_mean([*local, float(grad_norm), self.wait_s / wall])
        samples = self.samples * run.d.world_size
        return {
            "step": step,
            **dict(zip(keys, mean[:3], strict=True)),
            "lr": lr,
            "grad_norm": mean[3],
            "data_wait_share": mean[4],
            "step_s": wall / self.steps,
            "samples_per_s": samples / wall,
            "epoch": run.loader.epoch,
        }


def log_record(run: Run, record: dict) -> None:
    run.history.append(record)
    if not run.d.is_main:
        return
    print(
        f"step {record['step']}/{run.cfg.steps} loss {record['loss']:.5f} "
        f"(fm {record['fm']:.5f} sem {record['sem']:.5f}) lr {record['lr']:.2e} "
        f"gnorm {record['grad_norm']:.3f} | {record['samples_per_s']:.1f} samples/s, "
        f"{record['step_s']:.3f} s/step, data wait {100 * record['data_wait_share']:.1f}%",
        flush=True,
    )
    with open(Path(run.cfg.output_dir) / "train_log.jsonl", "a") as f:
        f.write(json.dumps(record) + "\n")


def log_samples(run: Run, step: int, batch: dict[str, Any]) -> None:
    path = Path(run.cfg.output_dir) / f"samples_rank{run.d.rank}.jsonl"
    tasks = [None if p is None else p.get("task") for p in batch.get("pretext") or []]
    rec = {
        "step": step,
        "rank": run.d.rank,
        "epoch": batch["epoch"],
        "padding": batch["padding"],
        "ids": list(batch["rng_id"]),
        "tasks": tasks,
    }
    with open(path, "a") as f:
        f.write(json.dumps(rec) + "\n")
