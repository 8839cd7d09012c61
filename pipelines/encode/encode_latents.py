"""EncodeLatents: Wan VAE latents of each row's frames, normalised as the DiT consumes them.

IN: the frames columns of ``sides`` and ``frames_shape``. OUT: one latent tensor per side
(bf16 C,T',H',W'); the frames are dropped here (the last stage that needs them). Fan-out 1:1.
Resources: an actor pool (``engine.latents``) holding the VAE (``setup()`` loads it once per
actor; GPU on a cluster, CPU here). A clip has one side (``frames`` -> ``latents``), a pair two
(source and target, the same frames in the same bucket, so the latents share a shape).

Rows are encoded one at a time: the rows of a batch come from different buckets, and one row
per call keeps the result independent of how Ray batched them (resume compares rows). Memory
stays bounded by ``vae.chunk_frames`` / ``vae.tiling`` (``sama.encoders.vae``). ``describe()``
gives the provenance: model and ``latent_norm``; with ``black_latent`` (clips) also the latent
of black frames per bucket that the trainer's latent-space cube inpainting uses (SAMA.md §3).
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from pipelines.engine.stage import Row, Rows, Stage
from sama.video.buckets import buckets_for


class EncodeLatents(Stage):
    name = "encode_latents"
    engine_key = "latents"
    describe_loads_model = True
    sides: ClassVar[tuple[tuple[str, str], ...]] = (("frames", "latents"),)  # frames -> latents
    black_latent: ClassVar[bool] = True
    inputs = ("frames", "frames_shape")
    outputs = ("latents", "latents_shape", "latents_dtype")
    drops = ("frames", "frames_shape")

    def __init__(self, cfg) -> None:
        super().__init__(cfg)
        self.vae: Any = None

    def uses_actor(self) -> bool:
        return True

    def setup(self) -> None:
        if self.vae is None:
            from sama.encoders.vae import WanVAE

            self.vae = WanVAE.load(self.cfg.vae)

    def process(self, rows: Rows) -> Rows:
        return self.map_rows(rows, self._encode)

    def _encode(self, row: Row) -> Row:
        from sama.tensors import encode_tensor

        out: Row = {}
        for frames_col, prefix in self.sides:
            clip_THWC = np.asarray(row[frames_col]).reshape(row["frames_shape"])
            data, shape, dtype = encode_tensor(self.vae.encode(clip_THWC), "bfloat16")
            out |= {prefix: data, f"{prefix}_shape": shape, f"{prefix}_dtype": dtype}
        return out

    def describe(self) -> dict:
        """VAE provenance, ``latent_norm`` and (clips) ``black_latent``: latent frame 1 of an
        all-black clip (``WanVAE.black_frame_latent``) averaged over space, per channel, at the
        square-most bucket, and ``black_latent_by_bucket`` for every bucket ("WxH" keys)."""
        out = {"vae": self.vae.model_info(), "latent_norm": self.vae.normalisation(),
               "latents_dtype": "bfloat16"}  # fmt: skip
        if not self.black_latent:
            return out
        res = self.cfg.clips.resolution
        by_bucket = {f"{w}x{h}": [float(v) for v in self.vae.black_frame_latent(h, w)]
                     for w, h in buckets_for(res)}  # fmt: skip
        square = min(buckets_for(res), key=lambda b: abs(b[0] / b[1] - 1))
        return out | {"black_latent": by_bucket[f"{square[0]}x{square[1]}"],
                      "black_latent_by_bucket": by_bucket}  # fmt: skip
