"""``sama build CONFIG [a.b=value ...] [--ray-address ADDR]``: raw videos -> clip shards.

``build(cfg)`` lists the inputs, drops those a previous run finished (``pipelines/resume.py``),
runs the stages (``pipelines/runner.py``) into the shard writer, then writes
``ROOT/summary.json`` (every input, so ``sama validate`` can check each one is accounted for)
and prints a summary: inputs, clips, errors by kind, time and throughput. A progress bar runs
meanwhile. Layout of ROOT: ``clips/*.parquet``, ``errors/*.parquet``, ``build_config.yaml``,
``summary.json``, ``_state/`` (see ``pipelines/layout.py``).

``input.kind=pairs`` builds edit pairs instead (``pipelines/pairs_build.py``), possibly into the
same root: ``summary.json`` then lists the inputs of both builds (``pipelines/root_kinds.py``).
"""

from __future__ import annotations

import argparse
import json
import posixpath
import sys
import time
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import fsspec
import pyarrow.parquet as pq
import yaml

import sama
from datasets_spec import CLIPS_V1
from datasets_spec.provenance import compare, stable_hash
from pipelines import runner
from pipelines.config import BuildConfig, load_build_config, output_fingerprint
from pipelines.layout import BUILD_CONFIG_FILE, SUMMARY_FILE
from pipelines.resume import BuildState
from pipelines.root_kinds import merge_summary
from pipelines.stages import ListInputs, WriteShards, make_stages
from sama.config import config_hash, to_dict
from sama.errors import ConfigError
from sama.video.buckets import buckets_for
from sama.video.frames import latent_num_frames


def provenance(cfg: BuildConfig, described: dict) -> dict:
    """What produced the shards (``datasets_spec.provenance.REQUIRED`` and more)."""
    c = cfg.clips
    return {
        "spec": CLIPS_V1.id,
        "sama_version": sama.__version__,
        **described,  # vae, latent_norm, black_latent(_by_bucket), siglip, anchor_policy, text
        "text": described.get("text"),
        "frame_policy": {
            "num_frames": c.num_frames,
            "latent_frames": latent_num_frames(c.num_frames),
            "min_frames": c.shortest_clip,
            "long_shot": c.long_shot,
            "max_clips_per_shot": c.max_clips_per_shot,
            "stride": 1,
            "fps_resampling": False,
            "shot_detector": cfg.shots.describe(),
        },
        "resolution_policy": {
            "resolution": c.resolution,
            "buckets": [list(b) for b in buckets_for(c.resolution)],
            "assign": "nearest aspect ratio (log space)",
            "resize": "cover-resize, centre-crop",
        },
        "build_config": to_dict(cfg),
        "output_fingerprint": stable_hash(output_fingerprint(cfg)),
    }


def build(cfg: BuildConfig) -> dict:
    """Run the build described by ``cfg``; returns the summary (also in ``summary.json``)."""
    if cfg.input.kind == "pairs":
        from pipelines.pairs_build import build_pairs

        return build_pairs(cfg)
    t0, started = time.monotonic(), datetime.now(UTC).isoformat(timespec="seconds")
    fs, root = fsspec.core.url_to_fs(cfg.output.uri, **cfg.output.storage_options)
    state = BuildState(fs, root)
    resumed = state.prepare(output_fingerprint(cfg), cfg.output.if_exists, cfg.output.uri)
    inputs = ListInputs(cfg).process([])
    done = state.done_inputs()
    todo = [r for r in inputs if r["video_id"] not in done]
    stages = make_stages(cfg)
    runner.plan(stages)  # a wiring error fails here, before Ray starts
    _write(
        fs, posixpath.join(root, BUILD_CONFIG_FILE), yaml.safe_dump(to_dict(cfg), sort_keys=False)
    )
    print(
        f"sama build: {len(inputs)} inputs, {len(inputs) - len(todo)} already built, "
        f"{len(todo)} to do -> {cfg.output.uri}",
        file=sys.stderr,
        flush=True,
    )
    counts = {"clips": 0, "errors": 0, "skipped_rows": 0}
    if todo:  # nothing to do: no Ray, no models
        with runner.ray_session(cfg):
            prov = provenance(cfg, runner.describe(cfg, stages))
            _check_same_models(state, prov, cfg.output.uri)
            written = state.existing_ids({r["video_id"] for r in todo})
            sink = WriteShards(cfg, state, prov, written)
            _run_with_progress(cfg, stages, todo, sink)
        counts = sink.counts
    stats = {
        **counts,
        "resumed": resumed,
        "processed_inputs": len(todo),
        "skipped_inputs": len(inputs) - len(todo),
        "started_at": started,
        "wall_s": round(time.monotonic() - t0, 3),
    }
    summary = summarize(cfg, state, inputs, stats)
    merged = merge_summary(_read_json(fs, posixpath.join(root, SUMMARY_FILE)), summary, "clips")
    _write(fs, posixpath.join(root, SUMMARY_FILE), json.dumps(merged, indent=1) + "\n")
    print(format_summary(summary), file=sys.stderr, flush=True)
    return summary


def _run_with_progress(cfg: BuildConfig, stages: list, todo: list[dict], sink: WriteShards) -> None:
    from tqdm import tqdm

    bar = tqdm(
        total=len(todo),
        desc="build",
        unit="video",
        file=sys.stderr,
        mininterval=1.0,
        dynamic_ncols=True,
    )

    def consume(batch: list[dict]) -> None:
        finished = sink.process(batch)
        bar.update(len(finished))
        bar.set_postfix(clips=sink.counts["clips"], errors=sink.counts["errors"], refresh=False)

    try:
        runner.run(cfg, stages, todo, consume)
    finally:  # even when the run fails: what arrived complete is written and marked done
        sink.close()
        bar.close()


def _check_same_models(state: BuildState, prov: dict, uri: str) -> None:
    old = state.existing_provenance()
    if old is None:
        return
    changes = compare(old, prov)
    if changes:
        raise ConfigError(
            f"output {uri!r} holds shards made with other models: "
            f"{'; '.join(changes)}; use a new output.uri"
        )


def _read_json(fs: Any, path: str) -> dict | None:
    if not fs.exists(path):
        return None
    with fs.open(path, "rb") as f:
        return json.loads(f.read())


def _write(fs: Any, path: str, text: str) -> None:
    from pipelines.writer import open_atomic

    with open_atomic(fs, path) as f:
        f.write(text.encode())


def summarize(cfg: BuildConfig, state: BuildState, inputs: list[dict], run: dict) -> dict:
    """Counts over the whole output (earlier runs included) plus this run's figures."""
    fs = state.fs
    clips, with_clips = 0, set()
    for p in state.shard_paths("clips"):
        with fs.open(p, "rb") as f:
            t = pq.read_table(f, columns=["video_id"])
        clips += t.num_rows
        with_clips.update(t.column("video_id").to_pylist())
    errs: list[dict] = []
    for p in state.shard_paths("errors"):
        with fs.open(p, "rb") as f:
            errs += pq.read_table(f, columns=["item_id", "stage", "kind"]).to_pylist()
    wall = max(run["wall_s"], 1e-9)
    run |= {
        "clips_per_s": round(run["clips"] / wall, 3),
        "inputs_per_s": round(run["processed_inputs"] / wall, 3),
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "executor": cfg.engine.executor,
        "ray_address": cfg.engine.ray_address or "local",
    }
    ids = [r["video_id"] for r in inputs]
    accounted = with_clips | {e["item_id"] for e in errs}
    return {
        "spec": CLIPS_V1.id,
        "sama_version": sama.__version__,
        "output": cfg.output.uri,
        "inputs": [{"id": r["video_id"], "uri": r["source_uri"], "kind": "clips"} for r in inputs],
        "num_inputs": len(inputs),
        "clips": clips,
        "errors": len(errs),
        "inputs_with_clips": len(with_clips & set(ids)),
        "inputs_with_errors": len({e["item_id"] for e in errs} & set(ids)),
        "inputs_unaccounted": sorted(set(ids) - accounted),
        "errors_by_kind": dict(sorted(Counter(e["kind"] for e in errs).items())),
        "errors_by_stage": dict(sorted(Counter(e["stage"] for e in errs).items())),
        "config_hash": config_hash(cfg),
        "output_fingerprint": stable_hash(output_fingerprint(cfg)),
        "wall_s": run["wall_s"],
        "run": run,
    }


def format_summary(s: dict) -> str:
    r = s["run"]
    kinds = ", ".join(f"{k} {n}" for k, n in s["errors_by_kind"].items()) or "none"
    lines = [
        f"sama build done in {r['wall_s']:.1f}s: {s['num_inputs']} inputs "
        f"({r['processed_inputs']} processed, {r['skipped_inputs']} already built), "
        f"{s['clips']} clips, {s['errors']} errors",
        f"  this run: {r['clips']} clips, {r['errors']} error rows, "
        f"{r['inputs_per_s']:.2f} inputs/s, {r['clips_per_s']:.2f} clips/s",
        f"  errors by kind: {kinds}",
        f"  output: {s['output']}",
    ]
    if s["inputs_unaccounted"]:
        lines.append(f"  NOT accounted for: {s['inputs_unaccounted'][:10]}")
    return "\n".join(lines)


def build_main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="sama build",
        description="Build clip shards from raw videos, or edit-pair shards from a pair "
        "manifest (input.kind=pairs), on Ray Data. Overrides: a.b=value.",
    )
    p.add_argument("config", help="build config YAML (e.g. configs/build_clips.yaml)")
    p.add_argument("overrides", nargs="*", help="dotted overrides, e.g. input.uri=videos/")
    p.add_argument("--ray-address", default=None, help="join this Ray cluster (or 'auto')")
    args = p.parse_intermixed_args(list(sys.argv[1:] if argv is None else argv))
    cfg = load_build_config(args.config, list(args.overrides))
    if args.ray_address:  # not through YAML parsing: "host:port" must stay a string
        cfg.engine.ray_address = args.ray_address
    build(cfg)
    return 0


if __name__ == "__main__":
    sys.exit(build_main())
