"""The build stages, one per file, in pipeline order (see ``base.py`` for what a stage is)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pipelines.stages.base import Batch, Row, Stage, check_batch, check_plan
from pipelines.stages.caption_clips import CaptionClips
from pipelines.stages.cut_clips import CutClips
from pipelines.stages.detect_shots import DetectShots
from pipelines.stages.encode_anchors import EncodeAnchors
from pipelines.stages.encode_latents import EncodeLatents
from pipelines.stages.encode_text import EncodeText
from pipelines.stages.list_inputs import ListInputs
from pipelines.stages.make_clips import MakeClips
from pipelines.stages.probe_videos import ProbeVideos
from pipelines.stages.write_shards import WriteShards

if TYPE_CHECKING:
    from pipelines.config import BuildConfig

# Between ListInputs (the source, in the driver) and WriteShards (the sink, in the driver).
# CutClips (one decode) or DetectShots + MakeClips (two decodes; BuildConfig.single_pass) make
# the clips. The frames are needed by the captioner (VLM), the anchors and the latents;
# EncodeLatents drops them, so EncodeText, which needs only the caption, comes last.
PIPELINE: tuple[type[Stage], ...] = (
    ProbeVideos,
    CutClips,
    DetectShots,
    MakeClips,
    CaptionClips,
    EncodeAnchors,
    EncodeLatents,
    EncodeText,
)


def make_stages(cfg: BuildConfig) -> list[Stage]:
    """The enabled worker stages of ``cfg``, in order."""
    return [cls(cfg) for cls in PIPELINE if cls.enabled(cfg)]


__all__ = [
    "PIPELINE",
    "Batch",
    "CaptionClips",
    "CutClips",
    "DetectShots",
    "EncodeAnchors",
    "EncodeLatents",
    "EncodeText",
    "ListInputs",
    "MakeClips",
    "ProbeVideos",
    "Row",
    "Stage",
    "WriteShards",
    "check_batch",
    "check_plan",
    "make_stages",
]
