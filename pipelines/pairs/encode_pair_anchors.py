"""EncodePairAnchors: SigLIP semantic tokens of the target's anchor frames (SAMA.md §2).

IN: ``target_frames``, ``frames_shape``, ``num_frames``. OUT: ``anchor_frame_indices``,
``anchor_tokens`` (bf16 N,65,D). Fan-out 1:1. Resources: an actor pool (``engine.anchors``).

SAMA anchors the *target*: N frames sampled from it (``anchors.num``/``anchors.policy``, the
released encoder uses target frame 0); an image target is its one frame. Everything but the
frames column is the clip build's ``EncodeAnchors`` (same encoder set-up, pooling, provenance).
"""

from __future__ import annotations

from pipelines.encode.encode_anchors import EncodeAnchors
from pipelines.pairs.columns import PAIR_COLUMNS, pair_columns, pair_tensor_columns


class EncodePairAnchors(EncodeAnchors):
    name = "encode_pair_anchors"
    registry = PAIR_COLUMNS
    inputs = ("target_frames", "frames_shape", *pair_columns("num_frames"))
    outputs = (*pair_columns("anchor_frame_indices"), *pair_tensor_columns("anchor_tokens"))
    frames_column = "target_frames"
