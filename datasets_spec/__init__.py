"""Every record kind declared once: columns, Arrow schema, HF features, validation, card table.

No heavy imports (only pyarrow and numpy).
"""

from datasets_spec.base import (
    PROVENANCE_KEY,
    SPEC_KEY,
    Column,
    RecordSpec,
    SchemaError,
    TensorColumn,
    read_tensor,
)
from datasets_spec.clips import CLIPS_V1
from datasets_spec.dedup import DEDUP_V1
from datasets_spec.errors import ERRORS_V1
from datasets_spec.pairs import PAIRS_V1

SPECS: dict[str, RecordSpec] = {s.id: s for s in (CLIPS_V1, PAIRS_V1, ERRORS_V1, DEDUP_V1)}


def get_spec(spec_id: str) -> RecordSpec:
    """``get_spec("clips/v1")``; unknown ids list what exists."""
    try:
        return SPECS[spec_id]
    except KeyError:
        raise SchemaError(f"unknown spec {spec_id!r}; known: {sorted(SPECS)}") from None


__all__ = [
    "CLIPS_V1",
    "DEDUP_V1",
    "ERRORS_V1",
    "PAIRS_V1",
    "PROVENANCE_KEY",
    "SPECS",
    "SPEC_KEY",
    "Column",
    "RecordSpec",
    "SchemaError",
    "TensorColumn",
    "get_spec",
    "read_tensor",
]
