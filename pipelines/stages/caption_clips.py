"""CaptionClips: a caption per clip, from the manifest, a VLM, or none; the source is recorded.

IN: ``manifest_caption`` (and ``frames``, ``frames_shape`` for the VLM). OUT: ``caption``,
``caption_source`` (``manifest``, ``vlm:<model id>`` or ``none``). Fan-out 1:1.
Resources: a cheap task for ``manifest``/``none``; an actor pool holding the VLM for ``vlm``.

Many corpora ship captions (Koala-36M, MotionBench), so the manifest is the default source. A
manifest row without a caption is a ``bad_manifest_row`` error unless ``caption.on_missing`` is
``empty``. The VLM path is any transformers image-text-to-text model (``caption.model_id``):
``caption.num_frames`` frames sampled uniformly from the clip are shown with
``caption.prompt``, greedy decoding, batched over the clips of a batch.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from pipelines.stages.base import Batch, Row, Stage, clip_columns, is_error
from sama.errors import ErrorKind, SampleError


class CaptionClips(Stage):
    name = "caption"
    engine_key = "caption"
    inputs = ("manifest_caption",)
    outputs = clip_columns("caption", "caption_source")
    drops = ("manifest_caption",)

    def __init__(self, cfg) -> None:
        super().__init__(cfg)
        if cfg.caption.source == "vlm":
            self.inputs = ("manifest_caption", "frames", "frames_shape")
        self._vlm: Any = None

    def uses_actor(self) -> bool:
        return self.cfg.caption.source == "vlm"

    def setup(self) -> None:
        if self.cfg.caption.source == "vlm" and self._vlm is None:
            self._vlm = VLMCaptioner(self.cfg.caption)

    def describe(self) -> dict:
        c = self.cfg.caption
        out: dict = {"source": c.source}
        if c.source == "vlm":
            out |= {
                "model_id": c.model_id,
                "revision": c.revision,
                "prompt": c.prompt,
                "num_frames": c.num_frames,
                "max_new_tokens": c.max_new_tokens,
            }
        return {"caption": out}

    def process(self, batch: Batch) -> Batch:
        source = self.cfg.caption.source
        if source == "vlm":
            return self._vlm_captions(batch)
        if source == "none":
            return self.map_rows(batch, lambda row: {"caption": "", "caption_source": "none"})
        return self.map_rows(batch, self._from_manifest)

    def _from_manifest(self, row: Row) -> Row:
        caption = row.get("manifest_caption")
        if caption is None or not str(caption).strip():
            if self.cfg.caption.on_missing == "error":
                raise SampleError(
                    ErrorKind.BAD_MANIFEST_ROW,
                    "the manifest gives no caption "
                    "(set caption.on_missing=empty to keep such clips)",
                    stage=self.name,
                )
            caption = ""
        return {"caption": str(caption).strip(), "caption_source": "manifest"}

    def _vlm_captions(self, batch: Batch) -> Batch:
        self.setup()
        good = [r for r in batch if not is_error(r)]
        clips = [sample_frames(r, self.cfg.caption.num_frames) for r in good]
        captions = iter(self._vlm.caption(clips) if clips else [])
        source = f"vlm:{self.cfg.caption.model_id}"
        out = []
        for row in batch:
            if is_error(row):
                out.append(self.passthrough(row))
            else:
                out.append(self.merge(row, {"caption": next(captions), "caption_source": source}))
        return out


def sample_frames(row: Row, n: int) -> np.ndarray:
    """``n`` frames spread uniformly over the clip (first and last included)."""
    clip_THWC = np.frombuffer(row["frames"], np.uint8).reshape(row["frames_shape"])
    idx = np.unique(np.linspace(0, len(clip_THWC) - 1, n).round().astype(int))
    return clip_THWC[idx]


class VLMCaptioner:
    """Any transformers image-text-to-text model, prompted with a few frames of the clip."""

    def __init__(self, cfg) -> None:
        import torch
        from transformers import AutoModelForImageTextToText, AutoProcessor

        from sama.encoders.config import resolve_device

        self.cfg = cfg
        self.device = resolve_device(cfg.device)
        self.processor = AutoProcessor.from_pretrained(cfg.model_id, revision=cfg.revision)
        self.model = (
            AutoModelForImageTextToText.from_pretrained(
                cfg.model_id, revision=cfg.revision, dtype=getattr(torch, cfg.dtype)
            )
            .to(self.device)
            .eval()
        )

    def caption(self, clips: list[np.ndarray]) -> list[str]:
        import torch
        from PIL import Image

        texts, images = [], []
        for frames_NHWC in clips:
            content = [{"type": "image"} for _ in frames_NHWC]
            content.append({"type": "text", "text": self.cfg.prompt})
            messages = [{"role": "user", "content": content}]
            texts.append(self.processor.apply_chat_template(messages, add_generation_prompt=True))
            images.append([Image.fromarray(f) for f in frames_NHWC])
        inputs = self.processor(text=texts, images=images, return_tensors="pt", padding=True)
        inputs = inputs.to(self.device)
        with torch.inference_mode():
            ids = self.model.generate(
                **inputs, max_new_tokens=self.cfg.max_new_tokens, do_sample=False
            )
        new = ids[:, inputs["input_ids"].shape[1] :]
        return [t.strip() for t in self.processor.batch_decode(new, skip_special_tokens=True)]
