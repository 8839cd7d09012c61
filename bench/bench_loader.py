"""Loader throughput vs a raw sequential read of the same bytes, and the pretext share of a step.

``python -m bench.bench_loader [--rows 240] [--workers 4]``. Writes synthetic ``clips/v1``
shards with realistic per-row tensors scaled down for CI (latents [16, 5, 30, 52] bf16 instead
of [16, 21, 60, 104]; SigLIP anchors [1, 65, 1152]; umT5 embeddings of 4 prompts, 4096-d), then
measures in one run:

- raw: pyarrow reads every row group (the columns the loader reads) and touches every tensor
  cell's bytes, one thread, no decoding: the floor any loader pays;
- loader: ``StreamingLoader`` samples/s (decode to torch, split text embeddings, collate),
  in the calling thread (0 workers: the cost one worker pays) and with ``--workers``
  background threads; goal >= 0.7x raw;
- pretext: the stage-0 corruption (``sama.pretext.make_pretext_sample``) per batch as a share
  of a one-worker loader step; goal <= 5%;
- data wait: the share of time a consumer whose step takes twice a one-worker loader step
  (sleeping, as a GPU-bound step leaves the CPU free) waits for batches.

Everything runs with one torch thread, as the loader's workers do. On a shared or busy
machine the numbers move a lot between runs; each figure is the best of three passes.
"""

from __future__ import annotations

import argparse
import itertools
import tempfile
import time

import pyarrow.parquet as pq
import torch

from sama.shards import list_shards
from tests.fakes import fake_provenance, make_fake_clip_rows, write_fake_shard
from trainer.data import DataConfig, SourceConfig, StreamingLoader
from trainer.shard_rows import read_columns

LATENT_CTHW = (16, 5, 30, 52)


def write_data(root: str, rows: int, per_shard: int = 80) -> None:
    for s in range(0, rows, per_shard):
        n = min(per_shard, rows - s)
        data = make_fake_clip_rows(
            n,
            prefix=f"b{s}",
            channels=LATENT_CTHW[0],
            latent_frames=LATENT_CTHW[1],
            latent_hw=LATENT_CTHW[2:],
            siglip_dim=1152,
            text_dim=4096,
            seed=s,
        )
        prov = fake_provenance("clips", channels=LATENT_CTHW[0])
        write_fake_shard(root, "clips", f"shard-{s:05d}", data, prov, row_group_rows=16)


def raw_read(root: str, columns: list[str]) -> tuple[float, int, int]:
    """(seconds, rows, bytes) for a sequential read of every row group + bytes access."""
    t0, rows, nbytes = time.perf_counter(), 0, 0
    for uri in list_shards(root, "clips"):
        with open(uri, "rb") as f:
            pf = pq.ParquetFile(f)
            for i in range(pf.num_row_groups):
                tbl = pf.read_row_group(i, columns=columns)
                for name in ("latents", "anchor_tokens", "text_embeds"):
                    for cell in tbl.column(name):
                        nbytes += len(cell.as_buffer())
                rows += tbl.num_rows
    return time.perf_counter() - t0, rows, nbytes


def loader_epoch(cfg: DataConfig, transform=None) -> tuple[float, int, int]:
    """(seconds, samples, batches) for one epoch."""
    loader = StreamingLoader(cfg, transform=transform)
    n = loader.batches_in_epoch()
    t0, samples = time.perf_counter(), 0
    for batch in itertools.islice(loader, n):
        samples += batch["target_latents"].shape[0]
    return time.perf_counter() - t0, samples, n


def data_wait(cfg: DataConfig, step_s: float, transform=None) -> float:
    """Share of time the consumer waits for batches when each step takes ``step_s`` (sleep:
    a GPU-bound step leaves the CPU to the workers)."""
    loader = StreamingLoader(cfg, transform=transform)
    it, waited = iter(loader), 0.0
    next(it)  # start-up (index, first reads) is not a steady-state wait
    n = loader.batches_in_epoch() - 1
    t_all = time.perf_counter()
    for _ in range(n):
        t0 = time.perf_counter()
        next(it)
        waited += time.perf_counter() - t0
        time.sleep(step_s)
    return waited / (time.perf_counter() - t_all)


def pretext_cost(cfg: DataConfig, batches: int = 12) -> tuple[float, int] | None:
    """(seconds spent in the corruption, batches) over the first ``batches`` batches.

    Called as the trainer's ``SampleTransform`` calls it (``copy_identity=False``: the identity
    source shares the target's storage, nothing writes in place); best of three passes, like
    the loader step it is compared with.
    """
    try:
        from sama.pretext import PretextConfig, make_pretext_sample
    except ImportError:
        return None
    loader = StreamingLoader(cfg)
    black, pcfg = loader.black_latent, PretextConfig()
    samples = [
        (lat, cap, rid, batch["epoch"])
        for batch in itertools.islice(loader, batches)
        for lat, cap, rid in zip(
            batch["target_latents"], batch["caption"], batch["rng_id"], strict=True
        )
    ]
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        for lat, cap, rid, epoch in samples:
            make_pretext_sample(lat, cap, black, pcfg, 0, rid, epoch, copy_identity=False)
        best = min(best, time.perf_counter() - t0)
    return best, batches


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=240)
    ap.add_argument("--workers", type=int, default=4)
    args, _ = ap.parse_known_args()  # `python -m bench loader` passes its own words too
    # Loader workers run torch on one thread each (trainer.data._one_torch_thread); do the
    # same here so "0 workers" is the per-worker cost and the pretext share is per worker.
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(prefix="bench-loader-") as root:
        t0 = time.perf_counter()
        write_data(root, args.rows)
        print(
            f"wrote {args.rows} clip rows, latents {list(LATENT_CTHW)} bf16, "
            f"in {time.perf_counter() - t0:.1f} s"
        )
        cfg = DataConfig(
            sources=[SourceConfig(root, "clips")],
            video_batch_size=4,
            num_workers=0,
            shuffle_buffer_row_groups=4,
        )
        columns = read_columns("clips")
        raw_read(root, columns)  # warm the page cache
        raw_s, raw_rows, raw_bytes = min(
            (raw_read(root, columns) for _ in range(2)), key=lambda r: r[0]
        )
        raw_rate = raw_rows / raw_s
        print(
            f"raw sequential read : {raw_rate:8.1f} rows/s  ({raw_bytes / raw_s / 1e9:.2f} GB/s "
            "of tensor bytes)"
        )
        step_s = None
        for workers in (0, args.workers):
            cfg.num_workers, cfg.prefetch = workers, max(2, 2 * workers)
            secs, samples, batches = min((loader_epoch(cfg) for _ in range(3)), key=lambda r: r[0])
            rate = samples / secs
            if workers == 0:
                step_s = secs / batches
            ok = "ok" if rate >= 0.7 * raw_rate else "BELOW GOAL"
            print(
                f"loader, {workers} workers : {rate:8.1f} samples/s = {rate / raw_rate:.2f}x raw "
                f"(goal >= 0.7x: {ok})"
            )
        cfg.num_workers, cfg.prefetch = args.workers, 2 * args.workers
        sim = 2 * step_s
        print(
            f"data wait, {args.workers} workers, simulated {sim * 1e3:.0f} ms GPU step: "
            f"{data_wait(cfg, sim):.1%} of step time"
        )
        cfg.num_workers = 0
        cost = pretext_cost(cfg)
        if cost is None:
            print("pretext: sama.pretext not available, skipped")
            return
        per_batch = cost[0] / cost[1]
        share = per_batch / step_s
        print(
            f"pretext corruption  : {per_batch * 1e3:.2f} ms per batch of 4 = {share:.1%} of a "
            f"{step_s * 1e3:.1f} ms single-worker loader step (goal <= 5%: "
            f"{'ok' if share <= 0.05 else 'ABOVE GOAL'})"
        )


if __name__ == "__main__":
    main()
