"""``sama build`` with ``input.kind=pairs``: an edit-pair manifest -> ``pairs/v1`` shards.

The same driver as the clip build (``pipelines/engine/driver.py``; ``PAIRS`` says what is
pair-specific): list the inputs in the driver, drop those a previous run finished, run the
stages on Ray Data (``pipelines/engine/runner.py``) into a driver-side shard writer, then write ``summary.json`` listing every pair input (``id`` =
``pair_id``, so ``sama validate`` checks each is in ``pairs`` or ``errors``). The stages
(SAMA.md §4):

    ListPairs -> ProbePairs -> LoadPairFrames -> [JudgePairs] -> EncodePairAnchors
              -> EncodePairLatents -> [EncodePairText] -> WritePairShards

The judge comes before the encoders, so pairs it filters cost no VAE time. The output root may
already hold a clip build: this build touches only ``pairs/``, its own error shards, its state
under ``_state/pairs/`` and ``build_config_pairs.yaml``, and merges its inputs into
``summary.json`` (``pipelines/engine/root.py``). It refuses to add pairs encoded with other
models than the shards already there (the trainer needs one latent space).
"""

from __future__ import annotations

from collections import Counter

import pyarrow.parquet as pq

import sama
from datasets_spec import PAIRS_V1
from datasets_spec.provenance import COMPATIBILITY_KEYS, compare, stable_hash
from pipelines.config import BuildConfig, output_fingerprint
from pipelines.engine.driver import BuildKind, error_counts, read_error_rows, run_build, run_fields
from pipelines.engine.resume import BuildState
from pipelines.engine.root import BUILD_KINDS
from pipelines.engine.stage import Stage
from pipelines.pairs.encode_pair_anchors import EncodePairAnchors
from pipelines.pairs.encode_pair_latents import EncodePairLatents
from pipelines.pairs.encode_pair_text import EncodePairText
from pipelines.pairs.judge_pairs import JudgePairs
from pipelines.pairs.list_pairs import ListPairs
from pipelines.pairs.load_pair_frames import LoadPairFrames
from pipelines.pairs.probe_pairs import ProbePairs
from pipelines.pairs.write_pair_shards import WritePairShards
from sama.config import config_hash, to_dict
from sama.errors import ConfigError
from sama.pairs.manifest import effective_config
from sama.video.buckets import buckets_for
from sama.video.frames import latent_num_frames

KIND = "pairs"
# Between ListPairs (the source, in the driver) and WritePairShards (the sink, in the driver).
PAIR_PIPELINE: tuple[type[Stage], ...] = (
    ProbePairs,
    LoadPairFrames,
    JudgePairs,
    EncodePairAnchors,
    EncodePairLatents,
    EncodePairText,
)


def make_pair_stages(cfg: BuildConfig) -> list[Stage]:
    """The enabled worker stages of a pair build, in order."""
    return [cls(cfg) for cls in PAIR_PIPELINE if cls.enabled(cfg)]


def provenance(cfg: BuildConfig, described: dict) -> dict:
    """What produced the pair shards (``datasets_spec.provenance.REQUIRED`` and more)."""
    a, eff = cfg.pairs.align, effective_config(cfg.pair_manifest())
    return {
        "spec": PAIRS_V1.id,
        "build_kind": KIND,
        "sama_version": sama.__version__,
        **described,  # vae, latent_norm, siglip, anchor_policy, text, judge
        "text": described.get("text"),
        "judge": described.get("judge", {"enabled": False}),
        "frame_policy": {
            "rule": "the same 4k+1 frames of source and target, from start_frame",
            "max_frames": a.max_frames,
            "max_latent_frames": latent_num_frames(a.max_frames) if a.max_frames else None,
            "min_frames": a.min_frames,
            "drop_first_frames": eff.drop_first_frames or 0,
            "stride": 1,
            "fps_resampling": False,
            "max_fps_diff": a.max_fps_diff,
            "images": "1 frame",
        },
        "resolution_policy": {
            "resolution": a.resolution,
            "buckets": [list(b) for b in buckets_for(a.resolution, a.multiple)],
            "assign": "nearest aspect ratio (log space); source and target must agree",
            "resize": "cover-resize, centre-crop",
        },
        "pairs": {
            "preset": eff.preset,
            "corpus": eff.corpus or None,
            "prompt_policy": cfg.pairs.prompt_policy(),
        },
        "build_config": to_dict(cfg),
        "output_fingerprint": stable_hash(output_fingerprint(cfg)),
    }


def check_same_models(state: BuildState, prov: dict, uri: str) -> None:
    """Refuse pairs encoded with other models than the shards already under ``state.root``: the
    root's pairs (every compatibility key) and clips (the latent space: all but the spec)."""
    for kind in BUILD_KINDS:
        old = BuildState(state.fs, state.root, kind).existing_provenance()
        if old is None:
            continue
        keys = COMPATIBILITY_KEYS if kind == KIND else [k for k in COMPATIBILITY_KEYS
                                                         if k[0] != "spec"]  # fmt: skip
        changes = compare(old, prov, keys)
        if changes:
            raise ConfigError(
                f"output {uri!r} holds {kind} shards made with other models: "
                f"{'; '.join(changes)}; use the same encoders or a new output.uri"
            )


def summarize(cfg: BuildConfig, state: BuildState, inputs: list[dict], run: dict) -> dict:
    """Counts over the root's pairs and pair errors (earlier runs included) + this run's."""
    fs = state.fs
    media: Counter = Counter()
    with_pairs: set[str] = set()
    for p in state.shard_paths(KIND):
        with fs.open(p, "rb") as f:
            t = pq.read_table(f, columns=["pair_id", "media_type"]).to_pydict()
        with_pairs.update(t["pair_id"])
        media.update(t["media_type"])
    errs = read_error_rows(state)
    wall = max(run["wall_s"], 1e-9)
    run |= {
        "pairs_per_s": round(run["pairs"] / wall, 3),
        **run_fields(cfg),
    }
    ids = [r["pair_id"] for r in inputs]
    with_errors = {e["item_id"] for e in errs}
    return {
        "spec": PAIRS_V1.id,
        "sama_version": sama.__version__,
        "output": cfg.output.uri,
        "inputs": [{"id": r["pair_id"], "uri": r["input_uri"], "kind": KIND} for r in inputs],
        "num_inputs": len(inputs),
        "pairs": sum(media.values()),
        "pairs_by_media": dict(sorted(media.items())),
        "errors": len(errs),
        "inputs_with_pairs": len(with_pairs & set(ids)),
        "inputs_with_errors": len(with_errors & set(ids)),
        "inputs_unaccounted": sorted(set(ids) - with_pairs - with_errors),
        **error_counts(errs),
        "judge": "off" if not cfg.judge.enabled else f"on, filter={cfg.judge.filter}",
        "config_hash": config_hash(cfg),
        "output_fingerprint": stable_hash(output_fingerprint(cfg)),
        "wall_s": run["wall_s"],
        "run": run,
    }


def format_summary(s: dict) -> str:
    r = s["run"]
    kinds = ", ".join(f"{k} {n}" for k, n in s["errors_by_kind"].items()) or "none"
    media = ", ".join(f"{n} {k}" for k, n in s["pairs_by_media"].items()) or "none"
    lines = [
        f"sama build (pairs) done in {r['wall_s']:.1f}s: {s['num_inputs']} pairs "
        f"({r['processed_inputs']} processed, {r['skipped_inputs']} already built), "
        f"{s['pairs']} written ({media}), {s['errors']} errors",
        f"  this run: {r['pairs']} pairs, {r['errors']} error rows, {r['pairs_per_s']:.2f} pairs/s",
        f"  errors by kind: {kinds}",
        f"  judge: {s['judge']}",
        f"  output: {s['output']}",
    ]
    if s["inputs_unaccounted"]:
        lines.append(f"  NOT accounted for: {s['inputs_unaccounted'][:10]}")
    return "\n".join(lines)


PAIRS = BuildKind(
    name=KIND,
    source=ListPairs,
    sink=WritePairShards,
    id_column="pair_id",
    make_stages=make_pair_stages,
    provenance=provenance,
    check_same_models=check_same_models,
    summarize=summarize,
    format_summary=format_summary,
    label="sama build (pairs)",
    noun="pairs",
    bar_desc="build pairs",
    bar_unit="pair",
)


def build_pairs(cfg: BuildConfig) -> dict:
    """Run the pair build described by ``cfg``; returns its summary (merged into
    ``summary.json`` with the root's other kinds)."""
    return run_build(cfg, PAIRS)
