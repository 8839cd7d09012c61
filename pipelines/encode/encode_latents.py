"""EncodeLatents: Wan VAE latents of each clip, normalised as the DiT consumes them.

IN: ``frames``, ``frames_shape``. OUT: ``latents`` (bf16 C,T',H',W'); the frames are dropped
here (last stage that needs them). Fan-out 1:1. Resources: an actor pool (``engine.latents``)
holding the VAE (``setup()`` loads it once per actor; GPU on a cluster, CPU here).

Clips are encoded one at a time: the rows of a batch come from different buckets, and one clip
per call keeps the result independent of how Ray batched the rows (resume compares rows).
Memory stays bounded by ``vae.chunk_frames`` / ``vae.tiling`` (``sama.encoders.vae``).
``describe()`` gives the provenance: model, ``latent_norm`` and the per-channel latent of
black frames (``black_latent``) the trainer's latent-space cube inpainting uses (SAMA.md §3).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from pipelines.engine.stage import Batch, Stage, is_error, tensor_columns
from sama.video.buckets import buckets_for


class EncodeLatents(Stage):
    name = "encode_latents"
    engine_key = "latents"
    describe_loads_model = True
    inputs = ("frames", "frames_shape")
    outputs = tensor_columns("latents")
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

    def process(self, batch: Batch) -> Batch:
        from sama.tensors import encode_tensor

        out = []
        for row in batch:
            if is_error(row):
                out.append(self.passthrough(row))
                continue
            clip_THWC = np.frombuffer(row["frames"], np.uint8).reshape(row["frames_shape"]).copy()
            data, shape, dtype = encode_tensor(self.vae.encode(clip_THWC), "bfloat16")
            out.append(
                self.merge(row, {"latents": data, "latents_shape": shape, "latents_dtype": dtype})
            )
        return out

    def describe(self) -> dict:
        """VAE provenance, ``latent_norm`` and ``black_latent`` (per channel, list of floats).

        ``black_latent`` is latent frame 1 of an all-black clip (4 black frames after a black
        frame, see ``WanVAE.black_frame_latent``) at the square-most bucket, averaged over
        space; ``black_latent_by_bucket`` holds the same for every bucket ("WxH" keys).
        """
        by_bucket = {}
        for w, h in buckets_for(self.cfg.clips.resolution):
            by_bucket[f"{w}x{h}"] = [float(v) for v in self.vae.black_frame_latent(h, w)]
        square = min(buckets_for(self.cfg.clips.resolution), key=lambda b: abs(b[0] / b[1] - 1))
        return {
            "vae": self.vae.model_info(),
            "latent_norm": self.vae.normalisation(),
            "black_latent": by_bucket[f"{square[0]}x{square[1]}"],
            "black_latent_by_bucket": by_bucket,
            "latents_dtype": "bfloat16",
        }
