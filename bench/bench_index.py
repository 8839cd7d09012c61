"""Loader start-up on many remote shards: footers read one after the other vs in a thread pool,
and from the node cache.

``python -m bench.bench_index [--shards 2000] [--latency-ms 10] [--workers 16]``. Writes
``--shards`` small ``clips/v2`` shards in the published layout, serves them from a local Hub
server (``tests/hub_server.py``, in its own process, each request delayed by ``--latency-ms``
as an object store's round trip is) and times ``StreamingLoader`` construction from
``hf://datasets/bench/index`` (listing + every footer + the small planning columns):

- sequential: ``data.index_workers=1`` (what the loader did before: one shard after another);
- parallel: ``data.index_workers=--workers``;
- cached: a second start with ``data.cache_dir`` set (another rank of the node, or a resumed
  run), which reads the index written by the first.

Prints each time and the ratios sequential / parallel and sequential / cached, measured in the
same run.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import tempfile
import time
from pathlib import Path

from tests.fakes import make_fake_clip_rows, write_fake_shard

REPO = "bench/index"


def write_shards(root: Path, n: int) -> None:
    for i in range(n):  # the published layout, split in numbered folders of 1000
        rows = make_fake_clip_rows(2, prefix=f"s{i}", seed=i)
        write_fake_shard(str(root), "clips", f"{i // 1000:04d}/part-{i:05d}", rows, subdir="data/")


def _serve(folder: str, latency_s: float, urls) -> None:
    from tests.hub_server import LocalHub, Repo

    hub = LocalHub()
    files = {str(p.relative_to(folder)): p.read_bytes() for p in Path(folder).rglob("*.parquet")}
    hub.repos[REPO] = Repo(branches={"main": files})
    for endpoint in ("resolve", "tree", "paths_info", "info"):
        hub.delay[endpoint] = latency_s
    urls.put(hub.url)
    while True:
        time.sleep(3600)


def start(folder: Path, latency_s: float) -> tuple[mp.Process, str]:
    urls = mp.get_context("fork").Queue()
    proc = mp.get_context("fork").Process(
        target=_serve, args=(str(folder), latency_s, urls), daemon=True
    )
    proc.start()
    return proc, urls.get(timeout=120)


def time_start(url: str, workers: int, cache_dir: str = "") -> float:
    from huggingface_hub import HfFileSystem

    from trainer.data import DataConfig, SourceConfig, StreamingLoader

    HfFileSystem.clear_instance_cache()  # every start lists the repo afresh
    cfg = DataConfig(
        sources=[SourceConfig(f"hf://datasets/{REPO}", "clips")],
        num_workers=0,
        index_workers=workers,
        cache_dir=cache_dir,
    )
    t0 = time.perf_counter()
    loader = StreamingLoader(cfg)
    took = time.perf_counter() - t0
    assert len(loader.shards) > 0
    return took


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shards", type=int, default=2000)
    p.add_argument("--latency-ms", type=float, default=10.0)
    p.add_argument("--workers", type=int, default=16)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "repo"
        t0 = time.perf_counter()
        write_shards(folder, args.shards)
        print(f"wrote {args.shards} shards in {time.perf_counter() - t0:.1f}s")
        proc, url = start(folder, args.latency_ms / 1000)
        try:
            from huggingface_hub import constants

            constants.HF_HUB_OFFLINE = False  # only the local server is reached
            constants.ENDPOINT = url
            constants.HUGGINGFACE_CO_URL_TEMPLATE = url + "/{repo_id}/resolve/{revision}/{filename}"
            os.environ.setdefault("HF_TOKEN", "hf_bench")
            parallel = time_start(url, args.workers)
            sequential = time_start(url, 1)
            cache = str(Path(tmp) / "cache")
            time_start(url, args.workers, cache)  # builds and stores the index
            cached = time_start(url, args.workers, cache)
        finally:
            proc.kill()
    print(f"start-up on {args.shards} shards, {args.latency_ms:g} ms per request:")
    print(f"  sequential footers (index_workers=1): {sequential:.2f}s")
    print(
        f"  parallel footers (index_workers={args.workers}): {parallel:.2f}s "
        f"-> {sequential / parallel:.1f}x faster"
    )
    print(
        f"  from the node cache (data.cache_dir): {cached:.2f}s "
        f"-> {sequential / cached:.1f}x faster than sequential"
    )


if __name__ == "__main__":
    main()
