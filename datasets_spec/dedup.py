"""``dedup/v1``: one row per clip marked as a near-duplicate of a kept clip.

Written beside the clip shards (never into them), so marking duplicates rewrites nothing and
can be redone with another threshold; readers that honour it skip the marked ``clip_id``s.
Only duplicates have rows: a clip without a row is kept. The table's provenance (Parquet
key-value metadata ``sama.provenance``, as for shards) must say how the marks were made:
``DEDUP_PROVENANCE`` lists the keys, ``check_dedup_provenance`` checks them.
"""

from __future__ import annotations

import pyarrow as pa

from datasets_spec.base import Column, RecordSpec, SchemaError

DEDUP_V1 = RecordSpec(
    kind="dedup",
    version="v1",
    key="clip_id",
    description="Clips marked as near-duplicates of a kept clip (SigLIP global anchor tokens).",
    fields=(
        Column("clip_id", pa.string(), "the near-duplicate clip (a `clips/v1` `clip_id`)", "dedup"),
        Column(
            "duplicate_of",
            pa.string(),
            "the kept clip it duplicates (`clip_id`, never itself marked)",
            "dedup",
        ),
        Column(
            "similarity",
            pa.float32(),
            "cosine similarity of the two clips' embeddings, >= the provenance `threshold`",
            "dedup",
            "cosine",
        ),
    ),
)

# What a dedup/v1 table's provenance must hold: the spec, the code, how clips were compared
# (``method``: index, embedding, keep rule), ``threshold``, the SigLIP model the anchor tokens
# came from, and the clip shards it was computed over.
DEDUP_PROVENANCE = ("spec", "sama_version", "method", "threshold", "siglip", "clips")


def check_dedup_provenance(prov: dict) -> None:
    """Raise ``SchemaError`` naming what a dedup/v1 provenance lacks or gets wrong."""
    missing = [k for k in DEDUP_PROVENANCE if k not in prov]
    if missing:
        raise SchemaError(f"dedup/v1 provenance is missing {missing}")
    if prov["spec"] != DEDUP_V1.id:
        raise SchemaError(f"dedup/v1 provenance declares spec {prov['spec']!r}")
    threshold = prov["threshold"]
    if not isinstance(threshold, int | float) or not 0.0 < float(threshold) <= 1.0:
        raise SchemaError(f"dedup/v1 provenance threshold {threshold!r} is not in (0, 1]")
