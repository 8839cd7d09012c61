"""EncodeText (optional, ``text.enabled``): umT5 embeddings of every prompt a row is trained with.

IN: ``caption`` (pairs: the instruction, ``prompts()``). OUT: ``text_prompts`` (the caption alone, then each pretext prefix + caption, in
``sama.pretext.PretextTask`` order, SAMA.md §3), ``text_lengths`` (real token count of each) and
``text_embeds`` (bf16 L,D: each prompt's embedding trimmed to its real length, concatenated along
L; split with ``text_lengths``). Fan-out 1:1. Resources: an actor pool (``engine.text``) holding
the text encoder.

The prompts of one clip are one encoder call, and clips of one video share a caption, so a small
per-actor cache keyed by the prompts saves most calls; the result never depends on batching.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from pipelines.engine.stage import Row, Rows, Stage

CACHE_SIZE = 256


class EncodeText(Stage):
    name = "encode_text"
    engine_key = "text"
    describe_loads_model = True
    inputs = ("caption",)
    outputs = ("text_prompts", "text_lengths", "text_embeds", "text_embeds_shape", "text_embeds_dtype")

    def __init__(self, cfg) -> None:
        super().__init__(cfg)
        self.encoder: Any = None
        self._cache: OrderedDict[str, Row] = OrderedDict()

    @classmethod
    def enabled(cls, cfg) -> bool:
        return cfg.text.enabled

    def uses_actor(self) -> bool:
        return True

    def setup(self) -> None:
        if self.encoder is None:
            from sama.encoders.text import UMT5TextEncoder

            self.encoder = UMT5TextEncoder.load(self.cfg.text.encoder)

    def process(self, rows: Rows) -> Rows:
        return self.map_rows(rows, lambda row: dict(self._embed(self.prompts(row))))

    def prompts(self, row: Row) -> list[str]:
        """Every prompt the trainer may use for ``row`` (pairs: the prefixed instruction)."""
        from sama.pretext import all_prompts

        return list(all_prompts(row["caption"]).values())

    def _embed(self, prompts: list[str]) -> Row:
        key = "\x00".join(prompts)
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        import torch

        from sama.tensors import encode_tensor

        embeds = self.encoder.encode(prompts)
        data, shape, dtype = encode_tensor(torch.cat(embeds), "bfloat16")
        out = {
            "text_prompts": prompts,
            "text_lengths": [int(e.shape[0]) for e in embeds],
            "text_embeds": data,
            "text_embeds_shape": shape,
            "text_embeds_dtype": dtype,
        }
        self._cache[key] = out
        if len(self._cache) > CACHE_SIZE:
            self._cache.popitem(last=False)
        return out

    def describe(self) -> dict:
        from sama.pretext import PretextTask

        return {
            "text": {
                **self.encoder.model_info(),
                "padding": self.cfg.text.encoder.padding,
                "prompt_order": [t.value for t in PretextTask],
                "dtype": "bfloat16",
            }
        }
