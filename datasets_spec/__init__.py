"""Every record kind declared once: columns, Arrow schema, HF features, validation, card table.

No heavy imports (only pyarrow and numpy). ``CLIPS`` / ``PAIRS`` are the versions builds write;
every reader accepts each version listed in ``READABLE`` for its kind.
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
from datasets_spec.clips import CLIPS_V1, CLIPS_V2
from datasets_spec.dedup import DEDUP_V1
from datasets_spec.errors import ERRORS_V1
from datasets_spec.pairs import PAIRS_V1, PAIRS_V2

CLIPS = CLIPS_V2  # the version builds write
PAIRS = PAIRS_V2  # the version builds write
ERRORS = ERRORS_V1

SPECS: dict[str, RecordSpec] = {
    s.id: s for s in (CLIPS_V1, CLIPS_V2, PAIRS_V1, PAIRS_V2, ERRORS_V1, DEDUP_V1)
}
# kind -> every version a reader accepts (oldest first)
READABLE: dict[str, tuple[RecordSpec, ...]] = {
    "clips": (CLIPS_V1, CLIPS_V2),
    "pairs": (PAIRS_V1, PAIRS_V2),
    "errors": (ERRORS_V1,),
}


def get_spec(spec_id: str) -> RecordSpec:
    """``get_spec("clips/v1")``; unknown ids list what exists."""
    try:
        return SPECS[spec_id]
    except (KeyError, TypeError):
        raise SchemaError(f"unknown spec {spec_id!r}; known: {sorted(SPECS)}") from None


__all__ = [
    "CLIPS",
    "CLIPS_V1",
    "CLIPS_V2",
    "ERRORS",
    "DEDUP_V1",
    "ERRORS_V1",
    "PAIRS",
    "PAIRS_V1",
    "PAIRS_V2",
    "PROVENANCE_KEY",
    "READABLE",
    "SPECS",
    "SPEC_KEY",
    "Column",
    "RecordSpec",
    "SchemaError",
    "TensorColumn",
    "get_spec",
    "read_tensor",
]
