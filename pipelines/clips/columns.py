"""The columns that flow between the clip stages, declared once (``clips/v2`` + in-flight).

``CLIP_COLUMNS`` is the clip recipe's registry: every column of the spec builds write
(``datasets_spec.CLIPS``, ``clips/v2``), the in-flight
columns below (manifest caption, probe results, shot lists, decoded frames) and the engine's
own (error fields, row accounting: ``engine/stage.py``). The runner types every batch from it.
"""

from __future__ import annotations

import pyarrow as pa

from datasets_spec import CLIPS
from datasets_spec.base import Column
from pipelines.engine.stage import in_flight, registry_with_engine, spec_names, spec_tensor_names

_c = in_flight

SPEC = CLIPS  # the record kind (and version) this recipe writes
INTERNAL: tuple[Column, ...] = (
    _c("manifest_caption", pa.string(), "caption given by the manifest", "list_inputs"),
    _c("video_num_frames", pa.int64(), "frame count of the source", "probe"),
    _c("video_duration_s", pa.float64(), "duration of the source", "probe"),
    _c("video_codec", pa.string(), "codec of the source", "probe"),
    _c("video_rotation", pa.int32(), "display rotation of the source", "probe"),
    _c("video_size_bytes", pa.int64(), "file size of the source", "probe"),
    _c("video_backend", pa.string(), "decoder chosen for the source", "probe"),
    _c("video_salvage", pa.string(), "what of a damaged source is still usable (\"\" if sound)",
       "probe"),  # fmt: skip
    _c("shot_starts", pa.list_(pa.int64()), "first frame of each shot", "detect_shots"),
    _c("shot_ends", pa.list_(pa.int64()), "end frame (exclusive) of each shot", "detect_shots"),
    _c("frames", pa.large_binary(), "clip frames, uint8 T,H,W,3 raw bytes", "make_clips"),
    _c("frames_shape", pa.list_(pa.int32()), "shape of `frames`", "make_clips"),
)
CLIP_COLUMNS = registry_with_engine([*SPEC.columns, *INTERNAL])
# spec columns a row must carry to be written (the nullable text columns may be absent)
REQUIRED_CLIP_COLUMNS = tuple(c.name for c in SPEC.columns if not c.nullable)


def clip_columns(*names: str) -> tuple[str, ...]:
    """Names checked against the spec (a typo fails at import, not mid-build)."""
    return spec_names(SPEC, *names)


def tensor_columns(name: str) -> tuple[str, str, str]:
    """The three stored columns of a tensor column of the spec."""
    return spec_tensor_names(SPEC, name)
