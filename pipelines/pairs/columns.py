"""The columns that flow between the pair stages, declared once (``pairs/v2`` + in-flight).

The clip recipe's registry cannot hold these (``start_frame`` is int64 in ``clips/v1`` and
int32 in ``pairs/v1``): pair stages set ``registry = PAIR_COLUMNS`` and the runner types their
batches from it. The engine's columns (error fields, row accounting) are added to it.
"""

from __future__ import annotations

import pyarrow as pa

from datasets_spec import PAIRS
from datasets_spec.base import Column
from pipelines.engine.stage import in_flight, registry_with_engine, spec_names, spec_tensor_names

_c = in_flight

SPEC = PAIRS  # the record kind (and version) this recipe writes
PAIR_INTERNAL: tuple[Column, ...] = (
    _c("input_uri", pa.string(), "manifest row of the pair (`manifest#row`)", "list_pairs"),
    _c("media_hint", pa.string(), "media type the manifest or config claims", "list_pairs"),
    _c("drop_first_frames", pa.int32(), "frames to drop at the start of both videos", "list_pairs"),
    _c("source_probe", pa.string(), "probe of the source video (JSON VideoInfo; null for images)",
       "probe_pairs"),
    _c("target_probe", pa.string(), "probe of the target video (JSON VideoInfo)", "probe_pairs"),
    _c("source_frames", pa.large_binary(), "source frames, uint8 T,H,W,3 raw bytes",
       "load_pair_frames"),
    _c("target_frames", pa.large_binary(), "target frames, uint8 T,H,W,3 raw bytes",
       "load_pair_frames"),
    _c("frames_shape", pa.list_(pa.int32()), "shape of `source_frames` and `target_frames`",
       "load_pair_frames"),
)  # fmt: skip
PAIR_COLUMNS = registry_with_engine([*SPEC.columns, *PAIR_INTERNAL])
# pairs/v1 columns a row must carry to be written (the nullable text/judge columns may be absent)
REQUIRED_PAIR_COLUMNS = tuple(c.name for c in SPEC.columns if not c.nullable)
SCORE_COLUMNS = {"if": "score_if", "vq": "score_vq", "cp": "score_cp", "mc": "score_mc"}


def pair_columns(*names: str) -> tuple[str, ...]:
    """Names checked against ``pairs/v1`` (a typo fails at import, not mid-build)."""
    return spec_names(SPEC, *names)


def pair_tensor_columns(name: str) -> tuple[str, str, str]:
    """The three stored columns of a ``pairs/v1`` tensor column."""
    return spec_tensor_names(SPEC, name)
