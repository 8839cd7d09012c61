"""Training logs: one line per logging window to stdout and ``OUTPUT/train_log.jsonl``.

Each record: step, the step objective averaged over the window (``loss``: the weighted sum over
every rank's samples, trainer/step.py; ``fm`` and ``sem`` are its two terms with the same
sample weights but without ``flow.loss_weighting``, so ``loss`` = ``fm`` + w * ``sem`` when
that is ``none``), learning rate, grad norm, samples/s (all ranks), seconds per step, and the
data-wait share: time blocked in ``next(loader)`` over the window's wall time (on CUDA the
window ends with a synchronize, so the wall time is the real one). ``log_samples`` writes each step's
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
        d, keys = run.d, ("loss", "fm", "sem")
        local = [sum(float(x[k]) for x in self.losses) / len(self.losses) for k in keys]
        # each context-parallel group holds its samples once per rank: divide by its size
        summed = [x / d.cp for x in d.all_reduce(local)]
        wait = d.all_reduce([self.wait_s / wall])[0] / d.world_size
        samples = self.samples * d.dp_world
        return {
            "step": step,
            **dict(zip(keys, summed, strict=True)),
            "lr": lr,
            "grad_norm": float(grad_norm),
            "data_wait_share": wait,
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
        "micro": batch["batch_index"],
        "epoch": batch["epoch"],
        "padding": batch["padding"],
        "ids": list(batch["rng_id"]),
        "tasks": tasks,
    }
    with open(path, "a") as f:
        f.write(json.dumps(rec) + "\n")
