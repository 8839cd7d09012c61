"""The clip recipe: raw videos -> ``clips/v1`` shards (what ``sama build`` runs by default).

    list_inputs -> ProbeVideos -> CutClips (or DetectShots + MakeClips) -> CaptionClips
                -> EncodeClipAnchors -> EncodeClipLatents -> [EncodeClipText] -> the writer

CutClips (one decode) or DetectShots + MakeClips (two; ``BuildConfig.single_pass``) make the
clips. The frames are needed by the captioner (VLM), the anchors and the latents;
EncodeClipLatents drops them, so EncodeClipText, which needs only the caption, comes last.
``CLIPS`` is what the engine's driver (``pipelines/engine/driver.py``) needs of this recipe.
Layout of ROOT: ``docs/dataset_layout.md``.
"""

from __future__ import annotations

import sama
from datasets_spec.provenance import compare, stable_hash
from pipelines.clips.caption_clips import CaptionClips
from pipelines.clips.columns import CLIP_COLUMNS, REQUIRED_CLIP_COLUMNS, SPEC
from pipelines.clips.cut_clips import CutClips
from pipelines.clips.detect_shots import DetectShots
from pipelines.clips.encode import EncodeClipAnchors, EncodeClipLatents, EncodeClipText
from pipelines.clips.list_inputs import OUTPUTS, STAGE, list_inputs
from pipelines.clips.make_clips import MakeClips
from pipelines.clips.probe_videos import ProbeVideos
from pipelines.config import BuildConfig, output_fingerprint
from pipelines.engine.driver import BuildKind, redacted_config
from pipelines.engine.resume import BuildState
from pipelines.engine.stage import ACCOUNTING_COLUMNS, ERROR_COLUMNS, Stage
from pipelines.engine.writer import RecordKind
from sama.config import to_dict
from sama.errors import ConfigError
from sama.video.buckets import buckets_for
from sama.video.frames import latent_num_frames

PIPELINE: tuple[type[Stage], ...] = (
    ProbeVideos,
    CutClips,
    DetectShots,
    MakeClips,
    CaptionClips,
    EncodeClipAnchors,
    EncodeClipLatents,
    EncodeClipText,
)
RECORD = RecordKind(
    name="clips",
    spec=SPEC,
    input_column="video_id",
    error_key=("clip_id", "video_id"),
    uri_columns=("source_uri",),
    group_by=("bucket_width", "bucket_height"),
    seconds_column="video_duration_s",
)
PROMPTS_PER_CLIP = 4  # the caption alone + the three pretext prefixes (SAMA.md §3)
TOKENS_PER_PROMPT = 96  # a caption's umT5 tokens, about (embeddings are trimmed to length)


def make_stages(cfg: BuildConfig) -> list[Stage]:
    """The enabled worker stages of ``cfg``, in order."""
    return [cls(cfg) for cls in PIPELINE if cls.enabled(cfg)]


def provenance(cfg: BuildConfig, described: dict) -> dict:
    """What produced the shards (``datasets_spec.provenance.REQUIRED`` and more)."""
    c = cfg.clips
    return {
        "spec": SPEC.id,
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
            "clean_clip_guard": to_dict(cfg.guard),
            "filters": cfg.filters.describe(),
        },
        "resolution_policy": {
            "resolution": c.resolution,
            "buckets": [list(b) for b in buckets_for(c.resolution)],
            "assign": "nearest aspect ratio (log space)",
            "resize": "cover-resize, centre-crop",
        },
        "build_config": redacted_config(cfg),
        "output_fingerprint": stable_hash(output_fingerprint(cfg)),
    }


def check_same_models(state: BuildState, prov: dict, uri: str) -> None:
    old = state.existing_provenance()
    if old is None:
        return
    changes = compare(old, prov)
    if changes:
        raise ConfigError(
            f"output {uri!r} holds shards made with other models: "
            f"{'; '.join(changes)}; use a new output.uri"
        )


def row_bytes(cfg: BuildConfig, prov: dict) -> int:
    """Stored bytes of one clip row at the largest bucket, from the models' sizes (bf16)."""
    w, h = max(buckets_for(cfg.clips.resolution), key=lambda b: b[0] * b[1])
    channels = len(prov.get("black_latent") or [0] * 16)
    latents = channels * latent_num_frames(cfg.clips.num_frames) * (h // 8) * (w // 8) * 2
    pooling = (prov.get("anchor_policy") or {}).get("pooling") or {}
    anchors = cfg.anchors.num * pooling.get("tokens_per_image", 65) * pooling.get("hidden_size", 1152) * 2
    text = prov.get("text") or {}
    embeds = PROMPTS_PER_CLIP * TOKENS_PER_PROMPT * int(text.get("dim", 4096)) * 2 if text else 0
    return latents + anchors + embeds + 1024


CLIPS = BuildKind(
    record=RECORD,
    registry=CLIP_COLUMNS,
    source_columns=OUTPUTS,
    sink_columns=(*REQUIRED_CLIP_COLUMNS, *ERROR_COLUMNS, *ACCOUNTING_COLUMNS),
    list_inputs=list_inputs,
    listing_stage=STAGE,
    make_stages=make_stages,
    provenance=provenance,
    check_same_models=check_same_models,
    row_bytes=row_bytes,
    fingerprint=output_fingerprint,
    label="sama build",
    noun="inputs",
    bar_unit="video",
    main_config=True,
)
