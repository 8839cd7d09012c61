"""``dedup/v1``: rows from ``sama.dedup`` make a valid table; its provenance is checked."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from datasets_spec import DEDUP_V1, SchemaError, get_spec
from datasets_spec.dedup import DEDUP_PROVENANCE, check_dedup_provenance
from datasets_spec.provenance import read_provenance
from sama.dedup import DedupConfig, find_duplicates


def _prov(cfg: DedupConfig, n: int) -> dict:
    return {"spec": "dedup/v1", "sama_version": "0.1.0", "method": cfg.method(n),
            "threshold": cfg.threshold, "siglip": {"id": "google/siglip-so400m-patch14-384"},
            "clips": {"spec": "clips/v1", "shards": 3}}  # fmt: skip


def test_rows_from_find_duplicates_are_a_valid_table(tmp_path):
    emb = np.eye(4, dtype=np.float32)[[0, 0, 1, 2, 2, 2]] + 0.01
    ids = ["v1-s000-c00", "v2-s000-c00", "v3-s000-c00", "v4-s000-c00", "v5-s001-c00", "v6-s000-c01"]
    cfg = DedupConfig(threshold=0.99)
    rows = find_duplicates(ids, emb, cfg)
    table = DEDUP_V1.from_rows([r.__dict__ for r in rows])
    DEDUP_V1.validate(table)
    assert table.column("duplicate_of").to_pylist() == ["v1-s000-c00", "v4-s000-c00", "v4-s000-c00"]
    kept = set(table.column("duplicate_of").to_pylist())
    assert not kept & set(table.column("clip_id").to_pylist())  # a kept clip is never marked
    prov = _prov(cfg, len(ids))
    check_dedup_provenance(prov)
    meta = {b"sama.provenance": json.dumps(prov).encode(), b"sama.spec": b"dedup/v1"}
    path = tmp_path / "dedup.parquet"
    pq.write_table(table.replace_schema_metadata(meta), path)
    back = pq.read_table(path)
    DEDUP_V1.validate(back)
    assert read_provenance(back.schema)["threshold"] == 0.99 and get_spec("dedup/v1") is DEDUP_V1


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"threshold": 1.5}, "threshold"),
        ({"spec": "clips/v1"}, "declares spec"),
        ({"method": None}, "missing"),
    ],  # fmt: skip
)
def test_provenance_must_say_how_the_marks_were_made(change, match):
    prov = _prov(DedupConfig(), 6)
    prov.update(change)
    if change.get("method", "") is None:
        del prov["method"]
    with pytest.raises(SchemaError, match=match):
        check_dedup_provenance(prov)
    assert set(DEDUP_PROVENANCE) >= {"method", "threshold"}
