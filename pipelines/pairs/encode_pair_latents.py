"""EncodePairLatents: Wan VAE latents of the source and the target of each pair.

IN: ``source_frames``, ``target_frames``, ``frames_shape``. OUT: ``source_latents``,
``target_latents`` (bf16 C,T',H',W', normalised as the DiT consumes them; an image is one latent
frame); the frames are dropped here (last stage that needs them). Fan-out 1:1. Resources: an
actor pool (``engine.latents``) holding the VAE, set up exactly as the clip build's
(``EncodeLatents.setup``).

Both sides are the same frames in the same bucket (``LoadPairFrames``), so their latents share
one shape: the trainer lays them on one position grid (SAMA.md §1). One pair per VAE call keeps
the row independent of how Ray batched the rows (resume compares rows). The provenance is the
VAE and ``latent_norm``; no ``black_latent``: that is the clip build's, for the stage-0 cube
inpainting of clips, and a pair build at another resolution would disagree with it.
"""

from __future__ import annotations

import numpy as np

from pipelines.encode.encode_latents import EncodeLatents
from pipelines.engine.stage import Row
from pipelines.pairs.columns import PAIR_COLUMNS, pair_tensor_columns


class EncodePairLatents(EncodeLatents):
    name = "encode_pair_latents"
    registry = PAIR_COLUMNS
    inputs = ("source_frames", "target_frames", "frames_shape")
    outputs = (*pair_tensor_columns("source_latents"), *pair_tensor_columns("target_latents"))
    drops = ("source_frames", "target_frames", "frames_shape")

    def process(self, batch: list[Row]) -> list[Row]:
        return self.map_rows(batch, self._encode)

    def _encode(self, row: Row) -> Row:
        from sama.tensors import encode_tensor

        out: Row = {}
        for side in ("source", "target"):
            frames_THWC = np.frombuffer(row[f"{side}_frames"], np.uint8)
            frames_THWC = frames_THWC.reshape(row["frames_shape"]).copy()
            data, shape, dtype = encode_tensor(self.vae.encode(frames_THWC), "bfloat16")
            out |= {f"{side}_latents": data, f"{side}_latents_shape": shape,
                    f"{side}_latents_dtype": dtype}  # fmt: skip
        return out

    def describe(self) -> dict:
        return {
            "vae": self.vae.model_info(),
            "latent_norm": self.vae.normalisation(),
            "latents_dtype": "bfloat16",
        }
