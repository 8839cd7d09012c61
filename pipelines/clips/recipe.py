"""``sama build CONFIG [a.b=value ...] [--ray-address ADDR]``: raw videos -> clip shards.

``build(cfg)`` lists the inputs, drops those a previous run finished (``pipelines/engine/resume.py``),
runs the stages (``pipelines/engine/runner.py``) into the shard writer (the driver shared with the pair
build: ``pipelines/engine/driver.py``; ``CLIPS`` says what is clip-specific), then writes
``ROOT/summary.json`` (every input, so ``sama validate`` can check each one is accounted for)
and prints a summary: inputs, clips, errors by kind, time and throughput. A progress bar runs
meanwhile. Layout of ROOT: ``clips/*.parquet``, ``errors/*.parquet``, ``build_config.yaml``,
``summary.json``, ``_state/`` (see ``pipelines/dataset/layout.py``).

``input.kind=pairs`` builds edit pairs instead (``pipelines/pairs/recipe.py``), possibly into the
same root: ``summary.json`` then lists the inputs of both builds (``pipelines/engine/root.py``).
"""

from __future__ import annotations

import pyarrow.parquet as pq

import sama
from datasets_spec import CLIPS_V1
from datasets_spec.provenance import compare, stable_hash
from pipelines.clips.caption_clips import CaptionClips
from pipelines.clips.cut_clips import CutClips
from pipelines.clips.detect_shots import DetectShots
from pipelines.clips.list_inputs import ListInputs
from pipelines.clips.make_clips import MakeClips
from pipelines.clips.probe_videos import ProbeVideos
from pipelines.clips.write_shards import WriteShards
from pipelines.config import BuildConfig, output_fingerprint
from pipelines.encode.encode_anchors import EncodeAnchors
from pipelines.encode.encode_latents import EncodeLatents
from pipelines.encode.encode_text import EncodeText
from pipelines.engine.driver import BuildKind, error_counts, read_error_rows, run_fields
from pipelines.engine.resume import BuildState
from pipelines.engine.stage import Stage
from sama.config import config_hash, to_dict
from sama.errors import ConfigError
from sama.video.buckets import buckets_for
from sama.video.frames import latent_num_frames

# Between ListInputs (the source, in the driver) and WriteShards (the sink, in the driver).
# CutClips (one decode) or DetectShots + MakeClips (two decodes; BuildConfig.single_pass) make
# the clips. The frames are needed by the captioner (VLM), the anchors and the latents;
# EncodeLatents drops them, so EncodeText, which needs only the caption, comes last.
PIPELINE: tuple[type[Stage], ...] = (
    ProbeVideos,
    CutClips,
    DetectShots,
    MakeClips,
    CaptionClips,
    EncodeAnchors,
    EncodeLatents,
    EncodeText,
)


def make_stages(cfg: BuildConfig) -> list[Stage]:
    """The enabled worker stages of ``cfg``, in order."""
    return [cls(cfg) for cls in PIPELINE if cls.enabled(cfg)]


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


def summarize(cfg: BuildConfig, state: BuildState, inputs: list[dict], run: dict) -> dict:
    """Counts over the whole output (earlier runs included) plus this run's figures."""
    fs = state.fs
    clips, with_clips = 0, set()
    for p in state.shard_paths("clips"):
        with fs.open(p, "rb") as f:
            t = pq.read_table(f, columns=["video_id"])
        clips += t.num_rows
        with_clips.update(t.column("video_id").to_pylist())
    errs = read_error_rows(state)
    wall = max(run["wall_s"], 1e-9)
    run |= {
        "clips_per_s": round(run["clips"] / wall, 3),
        "inputs_per_s": round(run["processed_inputs"] / wall, 3),
        **run_fields(cfg),
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
        **error_counts(errs),
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


CLIPS = BuildKind(
    name="clips",
    source=ListInputs,
    sink=WriteShards,
    id_column="video_id",
    make_stages=make_stages,
    provenance=provenance,
    check_same_models=_check_same_models,
    summarize=summarize,
    format_summary=format_summary,
    label="sama build",
    noun="inputs",
    bar_desc="build",
    bar_unit="video",
)
