"""CaptionClips: a caption per clip, from the manifest, a VLM, or none; the source is recorded.

IN: ``manifest_caption`` (and ``frames``, ``frames_shape`` for the VLM). OUT: ``caption``,
``caption_source`` (``manifest``, ``vlm:<model id>`` or ``none``). Fan-out 1:1.
Resources: a cheap task for ``manifest``/``none``; an actor pool holding the VLM for ``vlm``.

Many corpora ship captions (Koala-36M, MotionBench), so the manifest is the default source. A
manifest row without a caption is a ``bad_manifest_row`` error unless ``caption.on_missing`` is
``empty``. The VLM path is ``sama.captioner`` (any ``sama.vlm`` model, default Qwen2.5-VL;
``caption.vlm.num_frames`` frames sampled uniformly from the clip are shown with
``caption.prompt``; greedy by default, batched over the clips of a batch); an empty answer is
an ``encode_error`` row.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from pipelines.clips.columns import CLIP_COLUMNS, clip_columns
from pipelines.engine.stage import PARENT, Row, Rows, Stage
from sama.config import to_dict
from sama.errors import ErrorKind, SampleError


class CaptionClips(Stage):
    name = "caption"
    engine_key = "caption"
    registry = CLIP_COLUMNS
    inputs = ("manifest_caption",)
    outputs = clip_columns("caption", "caption_source")
    drops = ("manifest_caption",)

    def __init__(self, cfg) -> None:
        super().__init__(cfg)
        if cfg.caption.source == "vlm":
            self.inputs = ("manifest_caption", "clip_id", "frames", "frames_shape")
        self._vlm: Any = None

    def uses_actor(self) -> bool:
        return self.cfg.caption.source == "vlm"

    def setup(self) -> None:
        if self.cfg.caption.source == "vlm" and self._vlm is None:
            from sama.captioner import Captioner

            self._vlm = Captioner.load(self.cfg.caption)

    def describe(self) -> dict:
        c = self.cfg.caption
        out: dict = {"source": c.source}
        if c.source == "vlm":
            out |= {"prompt": c.prompt, "vlm": to_dict(c.vlm)}
        return {"caption": out}

    def process(self, rows: Rows) -> Rows:
        source = self.cfg.caption.source
        if source == "vlm":
            return self._vlm_captions(rows)
        if source == "none":
            return self.map_rows(rows, lambda row: {"caption": "", "caption_source": "none"})
        return self.map_rows(rows, self._from_manifest)

    def _from_manifest(self, row: Row) -> Row:
        caption = row.get("manifest_caption")
        if caption is None or not str(caption).strip():
            if self.cfg.caption.on_missing == "error":
                raise SampleError(
                    ErrorKind.BAD_MANIFEST_ROW,
                    "the manifest gives no caption (set caption.on_missing=empty to keep such "
                    "clips)",
                    stage=self.name,
                )
            caption = ""
        return {"caption": str(caption).strip(), "caption_source": "manifest"}

    def _vlm_captions(self, rows: Rows) -> Rows:
        """One batched VLM call; a whole-batch failure is retried row by row by the engine."""
        clips = [np.asarray(r["frames"]).reshape(r["frames_shape"]) for r in rows]
        answers = self._vlm.caption(clips, [r["clip_id"] for r in rows]) if rows else []
        source = f"vlm:{self.cfg.caption.vlm.model_id}"
        out = []
        for row, answer in zip(rows, answers, strict=True):
            if isinstance(answer, SampleError):
                out.append(self.fail(row, answer))
            else:
                out.append({PARENT: row[PARENT], "caption": answer, "caption_source": source})
        return out
