"""The clip recipe's encoder stages: the shared ones (``pipelines/encode/``) on clip columns."""

from __future__ import annotations

from pipelines.clips.columns import CLIP_COLUMNS
from pipelines.encode.encode_anchors import EncodeAnchors
from pipelines.encode.encode_latents import EncodeLatents
from pipelines.encode.encode_text import EncodeText


class EncodeClipAnchors(EncodeAnchors):
    registry = CLIP_COLUMNS


class EncodeClipLatents(EncodeLatents):
    registry = CLIP_COLUMNS


class EncodeClipText(EncodeText):
    registry = CLIP_COLUMNS
