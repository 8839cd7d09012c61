"""Engine benchmarks: bookkeeping cost per row as a build grows, driver memory while listing.

1. ``bookkeeping``: the per-row cost of completion tracking and sidecar accounting, driven with
   synthetic rows (2 rows per input, 64 rows per write bundle, inputs spread over bundles), at
   10,000 and at 1,000,000 inputs. Timed: the writer's per-bundle accounting
   (``engine.writer.input_counts``), the driver's ``InputTracker`` fed each sidecar, and the
   resume ledger built from every sidecar (``Ledger.per_input`` / ``done_ids``). Goal: the
   per-row cost at 1M within 1.5x of the cost at 10k (O(1) per row and per input; the old
   driver-side tracker rebuilt a set difference on every row: 0.10 ms/row at 10k inputs,
   1.7 ms at 100k).
2. ``listing``: a generated JSONL manifest of ``--listing-rows`` rows (default 10M) listed into
   the inputs table (``engine.listing.write_inputs`` over ``clips.list_inputs``) in a child
   process; its peak RSS. Goal < 1024 MB.

    python -m bench.bench_engine [--listing-rows 10000000] [--skip listing]
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa

ROWS_PER_INPUT = 2
BUNDLE_ROWS = 64


def synthetic_bundles(n_inputs: int, seed: int = 0) -> list[pa.Table]:
    """Write bundles of a build of ``n_inputs`` inputs (the accounting columns only)."""
    rng = random.Random(seed)
    rows = [(f"video-{i:08d}", k) for i in range(n_inputs) for k in range(ROWS_PER_INPUT)]
    # rows of an input arrive close together but not in one bundle: shuffle within windows
    window = 4 * BUNDLE_ROWS
    for start in range(0, len(rows), window):
        part = rows[start : start + window]
        rng.shuffle(part)
        rows[start : start + window] = part
    bundles = []
    for start in range(0, len(rows), BUNDLE_ROWS):
        part = rows[start : start + BUNDLE_ROWS]
        bundles.append(pa.table({
            "video_id": [v for v, _ in part],
            "row_weight": [1] * len(part),
            "input_rows": [ROWS_PER_INPUT if k == ROWS_PER_INPUT - 1 else 0 for _, k in part],
            "video_duration_s": [10.0] * len(part),
            "error_kind": pa.nulls(len(part), pa.string()),
        }))  # fmt: skip
    return bundles


def bookkeeping(n_inputs: int) -> dict[str, float]:
    from pipelines.clips.recipe import RECORD
    from pipelines.engine.resume import InputTracker, sidecar_tables
    from pipelines.engine.writer import input_counts

    bundles = synthetic_bundles(n_inputs)
    n_rows = n_inputs * ROWS_PER_INPUT
    t0 = time.perf_counter()
    sidecars = [{"name": f"s{i}", "inputs": input_counts(b, RECORD), "data": [], "errors": None,
                 "rows": b.num_rows, "error_rows": 0, "bytes": 0}
                for i, b in enumerate(bundles)]  # fmt: skip
    t_writer = time.perf_counter() - t0
    tracker = InputTracker()
    t0 = time.perf_counter()
    done = sum(tracker.add(sc["inputs"]) for sc in sidecars)
    t_driver = time.perf_counter() - t0
    assert done == n_inputs and not tracker.open
    t0 = time.perf_counter()
    ledger = sidecar_tables(sidecars)
    complete = len(ledger.done_ids())
    t_ledger = time.perf_counter() - t0
    assert complete == n_inputs
    us = 1e6 / n_rows
    return {"writer": t_writer * us, "driver": t_driver * us, "ledger": t_ledger * us,
            "total": (t_writer + t_driver + t_ledger) * us}  # fmt: skip


def bench_bookkeeping() -> None:
    print("1. bookkeeping per row: writer accounting + driver tracking + resume ledger")
    small, big = bookkeeping(10_000), bookkeeping(1_000_000)
    for part in ("writer", "driver", "ledger"):
        print(f"   {part:7s} {small[part]:7.2f} us/row at 10k inputs, {big[part]:7.2f} at 1M")
    print(f"bookkeeping: {small['total']:.2f} us/row at 10000 inputs, "
          f"{big['total']:.2f} us/row at 1000000 inputs (ratio {big['total'] / small['total']:.2f}, "
          "goal <= 1.5)")  # fmt: skip


def listing_child(manifest: str, out: str) -> None:
    """In a fresh process: list ``manifest`` into the inputs table; print rows and peak RSS."""
    import fsspec

    from pipelines.clips.list_inputs import list_inputs
    from pipelines.config import load_build_config
    from pipelines.engine.listing import write_inputs

    cfg = load_build_config(None, [f"input.uri={manifest}", f"output.uri={out}"])
    fs = fsspec.filesystem("file")
    t0 = time.perf_counter()
    listed = write_inputs(fs, out, "clips", list_inputs(cfg), "video_id", pa.array([], pa.string()),
                          "list_inputs")  # fmt: skip
    wall = time.perf_counter() - t0
    print(json.dumps({"rows": listed.total, "peak_mb": peak_rss_mb(), "wall_s": wall}))


def peak_rss_mb() -> float:
    """This process's peak RSS since its exec (VmHWM). ``ru_maxrss`` would also count the
    pages of the parent that the fork copied, before the exec."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def bench_listing(rows: int) -> None:
    with tempfile.TemporaryDirectory() as d:
        manifest = Path(d) / "manifest.jsonl"
        t0 = time.perf_counter()
        with manifest.open("w") as f:
            for i in range(rows):
                f.write(f'{{"id": "v{i:08d}", "video": "videos/{i % 1000:03d}/clip_{i:08d}.mp4", '
                        f'"caption": "a person walks a dog along the beach at sunset, shot {i}"}}\n')  # fmt: skip
        gen = time.perf_counter() - t0
        size = manifest.stat().st_size / 2**20
        print(f"2. listing a {rows:,}-row JSONL manifest ({size:.0f} MB, written in {gen:.0f}s)")
        res = subprocess.run([sys.executable, "-m", "bench.bench_engine", "--listing-child",
                              str(manifest), str(Path(d) / "out")],
                             capture_output=True, text=True, check=True)  # fmt: skip
        got = json.loads(res.stdout.strip().splitlines()[-1])
        print(f"   listed in {got['wall_s']:.0f}s ({rows / got['wall_s']:,.0f} rows/s)")
        print(f"listing: {got['rows']} rows, driver peak RSS {got['peak_mb']:.0f} MB (goal < 1024)")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.bench_engine", description=__doc__)
    p.add_argument("--listing-rows", type=int, default=10_000_000)
    p.add_argument("--skip", default="", help="comma list of: bookkeeping, listing")
    p.add_argument("--listing-child", nargs=2, default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.listing_child:
        listing_child(*args.listing_child)
        return
    skip = set(args.skip.split(","))
    if "bookkeeping" not in skip:
        bench_bookkeeping()
    if "listing" not in skip:
        bench_listing(args.listing_rows)


if __name__ == "__main__":
    main()
