"""Column groups shared by several record kinds (declared once, reused)."""

from __future__ import annotations

import pyarrow as pa

from datasets_spec.base import Column, TensorColumn

ANCHOR_FIELDS = (
    Column("anchor_frame_indices", pa.list_(pa.int32()),
           "indices (into the clip / target frames) of the anchor frames", "encode_anchors",
           "frame"),
    TensorColumn("anchor_tokens", "N,K,D",
                 "SigLIP semantic tokens of the anchor frames: K=65 per anchor (64 pooled local "
                 "+ 1 global), D = SigLIP width", "encode_anchors"),
)

TEXT_FIELDS = (
    Column("text_prompts", pa.list_(pa.string()),
           "every prompt the trainer may use for this row (caption alone, each pretext prefix "
           "+ caption, or the edit instruction with its prefix)", "encode_text", nullable=True),
    Column("text_lengths", pa.list_(pa.int32()),
           "token count of each prompt's embedding in `text_embeds`", "encode_text", "token",
           nullable=True),
    TensorColumn("text_embeds", "L,D",
                 "umT5 embeddings of `text_prompts`, each trimmed to its real length and "
                 "concatenated along L (split with `text_lengths`)", "encode_text", nullable=True),
)

BUCKET_FIELDS = (
    Column("bucket_width", pa.int32(), "width of the aspect bucket (after cover-resize + "
           "centre-crop)", "make_clips", "px"),
    Column("bucket_height", pa.int32(), "height of the aspect bucket", "make_clips", "px"),
)
