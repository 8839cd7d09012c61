"""Column groups shared by several record kinds (declared once, reused)."""

from __future__ import annotations

import pyarrow as pa

from datasets_spec.base import Column, TensorColumn

# Upper bound per axis of each tensor (a shard beyond it is refused before it is read,
# datasets_spec/cells.py). Far above anything SAMA builds (SAMA.md 1: 16 latent channels, 21
# latent frames for 81 frames, 60x104 latent pixels at 480p, 65 tokens of 1152-d SigLIP, umT5
# 512 tokens x 4096): room for other VAEs (48 channels), 4K and hour-long clips.
LATENT_MAX_SHAPE = (256, 2048, 1024, 1024)  # C, T, H, W
ANCHOR_MAX_SHAPE = (256, 4096, 16384)  # N anchors, K tokens, D width
TEXT_MAX_SHAPE = (65536, 16384)  # L tokens (all prompts), D width

# The preview image of a row, as the HF ``Image`` feature stores it (``datasets.Image``'s Arrow
# storage): the Hub viewer and ``datasets`` show it as a picture.
IMAGE_STRUCT = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
PREVIEW = Column("preview", IMAGE_STRUCT, "small JPEG of the anchor frame (at most 256 px on "
                 "its long side; `datasets_spec.preview.encode_preview`), as an HF `Image`, so "
                 "the Hub viewer and `datasets` show what the row is", "encode_anchors",
                 "image/jpeg", nullable=True, hf_feature="image")

ANCHOR_FIELDS = (
    Column("anchor_frame_indices", pa.list_(pa.int32()),
           "indices (into the clip / target frames) of the anchor frames", "encode_anchors",
           "frame"),
    TensorColumn("anchor_tokens", "N,K,D",
                 "SigLIP semantic tokens of the anchor frames: K=65 per anchor (64 pooled local "
                 "+ 1 global), D = SigLIP width", "encode_anchors", ANCHOR_MAX_SHAPE),
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
                 "concatenated along L (split with `text_lengths`)", "encode_text",
                 TEXT_MAX_SHAPE, nullable=True),
)

BUCKET_FIELDS = (
    Column("bucket_width", pa.int32(), "width of the aspect bucket (after cover-resize + "
           "centre-crop)", "make_clips", "px"),
    Column("bucket_height", pa.int32(), "height of the aspect bucket", "make_clips", "px"),
)
