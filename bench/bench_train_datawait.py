"""Data-wait share of step time in the CPU debug run (``configs/debug_cpu.yaml``).

``python -m bench.bench_train_datawait [--steps 60] [--workers 2]``. Builds the tiny model
bundle and synthetic shards shaped like the demo dataset (17-frame 64x64 clips -> latents
[16, 5, 8, 8]; image and video pairs), then runs the real training loop twice in this process:

- baseline: ``data.num_workers=0``, every batch is read, decoded, corrupted (pretext) and
  collated inside the training step, so its whole cost shows up as data wait;
- prefetch: ``data.num_workers=--workers`` background threads, ``data.prefetch=4``.

The data-wait share is what the loop logs: time blocked in ``next(loader)`` over the wall time
of the logging window. The first window (start-up, first row groups) is left out. Prints both
shares and their ratio. One torch thread, as the tiny model runs fastest that way.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import tempfile
from pathlib import Path

import torch

from sama.encoders.tiny import make_tiny_models
from tests.trainer.trainer_fixtures import write_train_shards
from trainer.config import load_train_config
from trainer.train import train

CONFIG = Path(__file__).resolve().parent.parent / "configs" / "debug_cpu.yaml"


def run(models: str, root: str, out: str, steps: int, workers: int) -> dict:
    cfg = load_train_config(
        CONFIG,
        [
            f"models_dir={models}",
            f"data.root={root}",
            f"output_dir={out}",
            f"steps={steps}",
            "log_every=10",
            "ckpt_every=0",
            f"data.num_workers={workers}",
            "data.prefetch=4",
        ],
    )
    with contextlib.redirect_stdout(io.StringIO()):  # the loop's own log lines
        history = train(cfg)["history"][1:]  # drop the start-up window
    n = len(history)
    return {
        "wait": sum(r["data_wait_share"] for r in history) / n,
        "step_s": sum(r["step_s"] for r in history) / n,
        "samples_per_s": sum(r["samples_per_s"] for r in history) / n,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--workers", type=int, default=2)
    args, _ = p.parse_known_args()  # `python -m bench NAME` leaves NAME in argv
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        models = str(Path(tmp) / "models")
        make_tiny_models(models)
        root = write_train_shards(
            Path(tmp) / "data",
            models,
            clips=32,
            image_pairs=32,
            video_pairs=16,
            latent_frames=5,
            latent_hw=(8, 8),
        )
        base = run(models, root, str(Path(tmp) / "base"), args.steps, 0)
        pre = run(models, root, str(Path(tmp) / "prefetch"), args.steps, args.workers)
    print(
        f"baseline (loading inside the step, 0 workers): data wait {100 * base['wait']:.1f}% "
        f"of step time, {base['step_s'] * 1000:.1f} ms/step, {base['samples_per_s']:.0f} samples/s"
    )
    print(
        f"prefetch ({args.workers} worker threads):            data wait {100 * pre['wait']:.1f}% "
        f"of step time, {pre['step_s'] * 1000:.1f} ms/step, {pre['samples_per_s']:.0f} samples/s"
    )
    ratio = pre["wait"] / base["wait"] if base["wait"] else float("nan")
    print(
        f"data-wait share, prefetch / baseline: {ratio:.2f}x; "
        f"step time, prefetch / baseline: {pre['step_s'] / base['step_s']:.2f}x"
    )


if __name__ == "__main__":
    main()
