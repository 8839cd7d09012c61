"""``pairs/v1`` and ``pairs/v2``: one row per edit pair (image or video), SAMA.md §4. v2 = v1 + a
nullable ``preview`` image column (the target's anchor frame as a small JPEG, an HF ``Image``)."""

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

_SCORE = "VLM-judge score 1-10 (mean over runs): "

PAIRS_V1 = RecordSpec(
    kind="pairs",
    version="v1",
    key="pair_id",
    description="Instruction-guided edit pairs (source, target, instruction), images and "
    "videos, with source/target Wan VAE latents and target SigLIP anchor tokens.",
    fields=(
        Column("pair_id", pa.string(), "unique pair id (manifest id, or a hash of its URIs)", "list_inputs"),
        Column("corpus", pa.string(), "corpus / preset the pair came from", "list_inputs"),
        Column("media_type", pa.string(), "`image` or `video`", "probe"),
        Column("source_uri", pa.string(), "URI of the source (any fsspec URI)", "list_inputs"),
        Column("target_uri", pa.string(), "URI of the edited target", "list_inputs"),
        Column("instruction", pa.string(), "editing instruction", "list_inputs"),
        Column("start_frame", pa.int32(), "frames dropped at the start of both videos (e.g. 4 "
               "for OpenVE-3M); 0 for images", "make_clips", "frame"),
        Column("num_frames", pa.int32(), "frames used from each video (4k+1); 1 for images",
               "make_clips", "frame"),
        Column("fps", pa.float64(), "frame rate of the source video (null for images)", "probe",
               "1/s", nullable=True),
        Column("orig_width", pa.int32(), "width of the source", "probe", "px"),
        Column("orig_height", pa.int32(), "height of the source", "probe", "px"),
        *BUCKET_FIELDS,
        TensorColumn("source_latents", "C,T,H,W", "Wan VAE latents of the source, normalised",
                     "encode_latents", LATENT_MAX_SHAPE),
        TensorColumn("target_latents", "C,T,H,W", "Wan VAE latents of the target, normalised",
                     "encode_latents", LATENT_MAX_SHAPE),
        *ANCHOR_FIELDS,
        *TEXT_FIELDS,
        Column("score_if", pa.float32(), _SCORE + "instruction following", "judge", "score", True),
        Column("score_vq", pa.float32(), _SCORE + "visual quality", "judge", "score", True),
        Column("score_cp", pa.float32(), _SCORE + "content preservation", "judge", "score", True),
        Column("score_mc", pa.float32(), _SCORE + "motion consistency (videos)", "judge", "score", True),
        Column("judge_model", pa.string(), "id of the judge VLM", "judge", nullable=True),
    ),
)

PAIRS_V2 = dataclasses.replace(
    PAIRS_V1,
    version="v2",
    description=PAIRS_V1.description + " Each row carries a small JPEG preview of the target's "
    "anchor frame.",
    fields=(PAIRS_V1.fields[0], PREVIEW, *PAIRS_V1.fields[1:]),
)
