"""The pair recipe's encoder stages: the shared ones (``pipelines/encode/``) on pair columns.

- anchors from the *target* (SAMA.md §2: N frames sampled from it; an image target is its one
  frame);
- latents of both sides: the same frames in the same bucket (``LoadPairFrames``), so the two
  latents share one shape and the trainer lays them on one position grid (SAMA.md §1); no
  ``black_latent``: that is the clip build's, for the stage-0 cube inpainting of clips;
- text (optional): the instruction with the ``pairs.instruction_prefix`` (``[Video edit] `` by
  default) for the media in ``pairs.prefix_media``. The trainer looks the stored embedding up by
  its prompt, so a prompt it would not use costs an online encoding, never a wrong embedding.
"""

from __future__ import annotations

from pipelines.encode.encode_anchors import EncodeAnchors
from pipelines.encode.encode_latents import EncodeLatents
from pipelines.encode.encode_text import EncodeText
from pipelines.engine.stage import Row
from pipelines.pairs.columns import PAIR_COLUMNS, pair_columns, pair_tensor_columns


class EncodePairAnchors(EncodeAnchors):
    name = "encode_pair_anchors"
    registry = PAIR_COLUMNS
    frames_column = "target_frames"
    inputs = ("target_frames", "frames_shape", *pair_columns("num_frames"))


class EncodePairLatents(EncodeLatents):
    name = "encode_pair_latents"
    registry = PAIR_COLUMNS
    sides = (("source_frames", "source_latents"), ("target_frames", "target_latents"))
    black_latent = False
    inputs = ("source_frames", "target_frames", "frames_shape")
    outputs = (*pair_tensor_columns("source_latents"), *pair_tensor_columns("target_latents"))
    drops = ("source_frames", "target_frames", "frames_shape")


class EncodePairText(EncodeText):
    name = "encode_pair_text"
    registry = PAIR_COLUMNS
    inputs = pair_columns("instruction", "media_type")

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
