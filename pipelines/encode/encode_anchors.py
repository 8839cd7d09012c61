"""EncodeAnchors: SigLIP semantic tokens of the anchor frames (SAMA.md §2).

IN: ``frames_column`` (a clip's frames; a pair's target frames), ``frames_shape``,
``num_frames``. OUT: ``anchor_frame_indices``, ``anchor_tokens`` (bf16 N,65,D: 8x8 pooled
local tokens + 1 global per anchor) and ``preview`` (a small JPEG of the first anchor frame,
an HF ``Image``: what the Hub viewer and ``datasets`` show of a row). Fan-out 1:1. Resources: an actor pool (``engine.anchors``)
holding the SigLIP vision tower.

Anchor frames: ``anchors.num`` frames, policy ``first`` (frame 0, what the released encoder
uses) or ``uniform`` (``linspace(0, F-1, N)`` rounded); an image is its one frame. Each row's
anchors are one SigLIP call, so a row does not depend on how Ray batched the rows.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from pipelines.engine.stage import Row, Rows, Stage


def anchor_indices(num_frames: int, num: int, policy: str) -> list[int]:
    """Indices (into the clip) of its anchor frames."""
    if policy == "first":
        return [0] * num
    return [int(i) for i in np.linspace(0, num_frames - 1, num).round()]


class EncodeAnchors(Stage):
    name = "encode_anchors"
    engine_key = "anchors"
    describe_loads_model = True
    frames_column: ClassVar[str] = "frames"  # the frames the anchors are taken from
    inputs = ("frames", "frames_shape", "num_frames")
    outputs = ("anchor_frame_indices", "anchor_tokens", "anchor_tokens_shape",
               "anchor_tokens_dtype", "preview")  # fmt: skip

    def __init__(self, cfg) -> None:
        super().__init__(cfg)
        self.encoder: Any = None

    def uses_actor(self) -> bool:
        return True

    def setup(self) -> None:
        if self.encoder is None:
            from sama.encoders.siglip import SiglipAnchorEncoder

            self.encoder = SiglipAnchorEncoder.load(self.cfg.siglip)

    def process(self, rows: Rows) -> Rows:
        return self.map_rows(rows, self._encode)

    def _encode(self, row: Row) -> Row:
        from datasets_spec.preview import encode_preview
        from sama.tensors import encode_tensor

        a = self.cfg.anchors
        idx = anchor_indices(row["num_frames"], a.num, a.policy)
        clip_THWC = np.asarray(row[self.frames_column]).reshape(row["frames_shape"])
        data, shape, dtype = encode_tensor(self.encoder.encode(clip_THWC[idx]), "bfloat16")
        return {"anchor_frame_indices": idx, "anchor_tokens": data,
                "anchor_tokens_shape": shape, "anchor_tokens_dtype": dtype,
                "preview": encode_preview(clip_THWC[idx[0]])}  # fmt: skip

    def describe(self) -> dict:
        return {
            "siglip": self.encoder.model_info(),
            "anchor_policy": {
                "num": self.cfg.anchors.num,
                "policy": self.cfg.anchors.policy,
                "tokens_per_anchor": self.encoder.num_tokens,
                "pooling": self.encoder.pooling_info(),
                "dtype": "bfloat16",
            },
        }
