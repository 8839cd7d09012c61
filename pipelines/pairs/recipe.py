"""The pair recipe: an edit-pair manifest -> ``pairs/v1`` shards (``input.kind=pairs``).

    list_pairs -> ProbePairs -> LoadPairFrames -> [JudgePairs] -> EncodePairAnchors
               -> EncodePairLatents -> [EncodePairText] -> the writer

The judge comes before the encoders, so pairs it filters cost no VAE time (SAMA.md §4). The
output root may already hold a clip build: this build touches only ``pairs/``, its own error
shards (``errors/part-pairs-*``), its state under ``_state/pairs/`` and
``build_config_pairs.yaml`` (``pipelines/engine/root.py``). It refuses to add pairs encoded with
other models than the shards already there (the trainer needs one latent space). ``PAIRS`` is
what the engine's driver needs of this recipe.
"""

from __future__ import annotations

import sama
from datasets_spec.provenance import COMPATIBILITY_KEYS, compare, stable_hash
from pipelines.config import BuildConfig, output_fingerprint
from pipelines.engine.driver import BuildKind, redacted_config
from pipelines.engine.resume import BuildState, existing_provenance
from pipelines.engine.stage import ACCOUNTING_COLUMNS, ERROR_COLUMNS, Stage
from pipelines.engine.writer import RecordKind
from pipelines.pairs.columns import PAIR_COLUMNS, REQUIRED_PAIR_COLUMNS, SPEC
from pipelines.pairs.encode import EncodePairAnchors, EncodePairLatents, EncodePairText
from pipelines.pairs.judge_pairs import JudgePairs
from pipelines.pairs.list_pairs import OUTPUTS, STAGE, list_pairs
from pipelines.pairs.load_pair_frames import LoadPairFrames
from pipelines.pairs.probe_pairs import ProbePairs
from sama.errors import ConfigError
from sama.pairs.manifest import effective_config
from sama.video.buckets import buckets_for
from sama.video.frames import latent_num_frames

KIND = "pairs"
PAIR_PIPELINE: tuple[type[Stage], ...] = (
    ProbePairs,
    LoadPairFrames,
    JudgePairs,
    EncodePairAnchors,
    EncodePairLatents,
    EncodePairText,
)
RECORD = RecordKind(
    name=KIND,
    spec=SPEC,
    input_column="pair_id",
    error_key=("pair_id",),
    uri_columns=("input_uri", "source_uri"),
    group_by=("media_type", "num_frames", "bucket_width", "bucket_height"),
    count_by=("media_type",),
)


def make_pair_stages(cfg: BuildConfig) -> list[Stage]:
    """The enabled worker stages of a pair build, in order."""
    return [cls(cfg) for cls in PAIR_PIPELINE if cls.enabled(cfg)]


def provenance(cfg: BuildConfig, described: dict) -> dict:
    """What produced the pair shards (``datasets_spec.provenance.REQUIRED`` and more)."""
    a, eff = cfg.pairs.align, effective_config(cfg.pair_manifest())
    return {
        "spec": SPEC.id,
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
        "build_config": redacted_config(cfg),
        "output_fingerprint": stable_hash(output_fingerprint(cfg)),
    }


def check_same_models(state: BuildState, prov: dict, uri: str) -> None:
    """Refuse pairs encoded with other models than the shards already under the root: the
    root's pairs (every compatibility key) and clips (the latent space: all but the spec)."""
    for kind in (KIND, "clips"):
        old = existing_provenance(state.fs, state.root, kind)
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


def row_bytes(cfg: BuildConfig, prov: dict) -> int:
    """Stored bytes of one video pair row at the largest bucket (bf16), from the models."""
    a = cfg.pairs.align
    w, h = max(buckets_for(a.resolution, a.multiple), key=lambda b: b[0] * b[1])
    frames = latent_num_frames(a.max_frames) if a.max_frames else 21
    latents = 2 * 16 * frames * (h // 8) * (w // 8) * 2
    pooling = (prov.get("anchor_policy") or {}).get("pooling") or {}
    anchors = cfg.anchors.num * pooling.get("tokens_per_image", 65) * pooling.get("hidden_size", 1152) * 2
    text = prov.get("text") or {}
    return latents + anchors + (96 * int(text.get("dim", 4096)) * 2 if text else 0) + 1024


PAIRS = BuildKind(
    record=RECORD,
    registry=PAIR_COLUMNS,
    source_columns=OUTPUTS,
    sink_columns=(*REQUIRED_PAIR_COLUMNS, "input_uri", *ERROR_COLUMNS, *ACCOUNTING_COLUMNS),
    list_inputs=list_pairs,
    listing_stage=STAGE,
    make_stages=make_pair_stages,
    provenance=provenance,
    check_same_models=check_same_models,
    row_bytes=row_bytes,
    fingerprint=output_fingerprint,
    label="sama build (pairs)",
    noun="pairs",
    bar_unit="pair",
)
