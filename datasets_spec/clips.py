"""``clips/v1`` and ``clips/v2``: one row per clip cut from a plain video (stage-0 pretext data,
SAMA.md §3). v2 = v1 + a nullable ``preview`` image column (the anchor frame as a small JPEG, an
HF ``Image``) so the Hub viewer shows what a clip is; a new column is a new version
(CONVENTIONS.md rule 2), and every reader accepts both."""

from __future__ import annotations

import dataclasses

import pyarrow as pa

from datasets_spec.base import Column, RecordSpec, TensorColumn
from datasets_spec.common import (
    ANCHOR_FIELDS,
    BUCKET_FIELDS,
    LATENT_MAX_SHAPE,
    PREVIEW,
    TEXT_FIELDS,
)

CLIPS_V1 = RecordSpec(
    kind="clips",
    version="v1",
    key="clip_id",
    description="Shot-detected clips of 4k+1 frames in 480p aspect buckets, with Wan VAE "
    "latents, SigLIP anchor tokens and captions.",
    fields=(
        Column("clip_id", pa.string(), "unique clip id: `{video_id}-s{shot}-c{clip}`", "make_clips"),
        Column("video_id", pa.string(), "id of the source video (manifest id, or a hash of its "
               "URI)", "list_inputs"),
        Column("source_uri", pa.string(), "URI of the source video (any fsspec URI)", "list_inputs"),
        Column("shot_index", pa.int32(), "index of the shot in the source video", "detect_shots"),
        Column("clip_index", pa.int32(), "index of the clip within its shot", "make_clips"),
        Column("shot_start_frame", pa.int64(), "first frame of the shot in the source", "detect_shots", "frame"),
        Column("shot_end_frame", pa.int64(), "end frame of the shot (exclusive)", "detect_shots", "frame"),
        Column("shot_detector", pa.string(), "shot detector, preset and thresholds", "detect_shots"),
        Column("start_frame", pa.int64(), "first frame of the clip in the source", "make_clips", "frame"),
        Column("start_s", pa.float64(), "start time of the clip in the source", "make_clips", "s"),
        Column("num_frames", pa.int32(), "frames in the clip (4k+1)", "make_clips", "frame"),
        Column("fps", pa.float64(), "frame rate of the source (no resampling)", "probe", "1/s"),
        Column("orig_width", pa.int32(), "display width of the source video", "probe", "px"),
        Column("orig_height", pa.int32(), "display height of the source video", "probe", "px"),
        *BUCKET_FIELDS,
        Column("caption", pa.string(), "caption of the clip", "caption"),
        Column("caption_source", pa.string(), "where the caption came from: `manifest`, "
               "`vlm:<model id>` or `none`", "caption"),
        TensorColumn("latents", "C,T,H,W", "Wan VAE latents (posterior mean), normalised as "
                     "the DiT consumes them (see provenance `latent_norm`)", "encode_latents",
                     LATENT_MAX_SHAPE),
        *ANCHOR_FIELDS,
        *TEXT_FIELDS,
        Column("mean_luma", pa.float32(), "mean luma of the clip's frames (0-255)", "make_clips", "luma"),
        Column("motion_score", pa.float32(), "mean absolute difference of consecutive frames "
               "(0-255)", "make_clips", "luma"),
    ),
)

CLIPS_V2 = dataclasses.replace(
    CLIPS_V1,
    version="v2",
    description=CLIPS_V1.description + " Each row carries a small JPEG preview of its anchor frame.",
    fields=(CLIPS_V1.fields[0], PREVIEW, *CLIPS_V1.fields[1:]),
)
