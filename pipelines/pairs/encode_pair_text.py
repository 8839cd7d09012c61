"""EncodePairText (optional, ``text.enabled``): umT5 embedding of each pair's instruction prompt.

IN: ``instruction``, ``media_type``. OUT: ``text_prompts`` (one prompt: the instruction with the
``pairs.instruction_prefix``, ``[Video edit] `` by default, for the media in
``pairs.prefix_media``; see ``pipelines/pairs/config.py``), ``text_lengths``, ``text_embeds``
(bf16 L,D). Fan-out 1:1. Resources: an actor pool (``engine.text``).

The trainer (``trainer/inputs.py``) looks the stored embedding up by its prompt text, so a
prompt it would not use costs only an online encoding, never a wrong embedding. Encoder set-up
and the per-actor cache are the clip build's ``EncodeText``.
"""

from __future__ import annotations

from pipelines.encode.encode_text import EncodeText
from pipelines.engine.stage import Row
from pipelines.pairs.columns import PAIR_COLUMNS, pair_columns, pair_tensor_columns


class EncodePairText(EncodeText):
    name = "encode_pair_text"
    registry = PAIR_COLUMNS
    inputs = pair_columns("instruction", "media_type")
    outputs = (*pair_columns("text_prompts", "text_lengths"), *pair_tensor_columns("text_embeds"))

    def prompts(self, row: Row) -> list[str]:
        return [self.cfg.pairs.prompt(row["instruction"], row["media_type"])]

    def describe(self) -> dict:
        return {
            "text": {
                **self.encoder.model_info(),
                "padding": self.cfg.text.encoder.padding,
                "prompt_policy": self.cfg.pairs.prompt_policy(),
                "dtype": "bfloat16",
            }
        }
