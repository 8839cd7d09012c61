"""Specs: golden schemas, round trips through pyarrow and `datasets`, refusal of bad tables."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from datasets_spec import CLIPS_V1, ERRORS_V1, PAIRS_V1, SPECS, SchemaError, get_spec, read_tensor
from datasets_spec.tensors import bf16_bits_to_float32, float32_to_bf16_bits
from tests.rows import clip_row

GOLDEN = Path(__file__).parent / "golden"


@pytest.mark.parametrize("spec_id", sorted(SPECS))
def test_golden_schema_unchanged(spec_id):
    spec = get_spec(spec_id)
    path = GOLDEN / f"{spec_id.replace('/', '_')}.json"
    assert path.exists(), f"golden file {path} missing; write it with spec.golden_json()"
    assert json.loads(path.read_text()) == spec.golden(), (
        f"{spec_id} schema changed: a breaking change must be a new version, not an edit; "
        "if intended (non-breaking), regenerate the golden file"
    )


def test_roundtrip_pyarrow_and_datasets(tmp_path):
    from datasets import load_dataset

    rng = np.random.default_rng(0)
    rows = [clip_row(i, rng) for i in range(4)]
    table = CLIPS_V1.from_rows(rows)
    CLIPS_V1.validate(table)
    path = tmp_path / "clips.parquet"
    pq.write_table(table, path)
    back = pq.read_table(path)
    CLIPS_V1.validate(back)
    assert back.equals(table)
    ds = load_dataset(
        "parquet",
        data_files=str(path),
        split="train",
        cache_dir=str(tmp_path / "cache"),
        features=CLIPS_V1.features(),
    )
    assert ds.num_rows == 4
    for got, want in zip(ds, rows, strict=True):
        for name in ("latents", "anchor_tokens"):
            assert got[name] == want[name]  # bytes bit-identical
            np.testing.assert_array_equal(
                read_tensor(got, name, widen_bf16=False), read_tensor(want, name, widen_bf16=False)
            )
        assert got["caption"] == want["caption"] and got["num_frames"] == want["num_frames"]


def test_bf16_encoding_matches_torch():
    import torch

    x = torch.randn(1000) * 100
    ours = float32_to_bf16_bits(x.numpy())
    theirs = x.to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16)
    np.testing.assert_array_equal(ours, theirs)
    np.testing.assert_array_equal(bf16_bits_to_float32(ours), x.to(torch.bfloat16).float().numpy())


def test_missing_column_is_named():
    rng = np.random.default_rng(0)
    table = CLIPS_V1.from_rows([clip_row(0, rng)]).drop_columns(["caption"])
    with pytest.raises(SchemaError, match="'caption'"):
        CLIPS_V1.validate(table)


def test_wrong_type_is_named():
    rng = np.random.default_rng(0)
    table = CLIPS_V1.from_rows([clip_row(0, rng)])
    i = table.schema.get_field_index("num_frames")
    bad = table.set_column(i, pa.field("num_frames", pa.string()), pa.array(["9"], pa.string()))
    with pytest.raises(SchemaError, match="'num_frames'.*string"):
        CLIPS_V1.validate(bad)


def test_wrong_tensor_bytes_and_duplicates_are_named():
    rng = np.random.default_rng(0)
    row = clip_row(0, rng)
    row["latents"] = row["latents"][:-2]
    with pytest.raises(SchemaError, match="'latents' row 0"):
        CLIPS_V1.validate(CLIPS_V1.from_rows([row]))
    dup = [clip_row(0, rng), clip_row(0, rng)]
    with pytest.raises(SchemaError, match="duplicate"):
        CLIPS_V1.validate(CLIPS_V1.from_rows(dup))


def test_other_spec_version_refused():
    schema = CLIPS_V1.schema.with_metadata({b"sama.spec": b"clips/v2"})
    with pytest.raises(SchemaError, match="clips/v2"):
        CLIPS_V1.validate(schema)
    with pytest.raises(SchemaError, match="unknown spec"):
        get_spec("clips/v9")


def test_unknown_and_missing_row_keys():
    rng = np.random.default_rng(0)
    row = clip_row(0, rng)
    row["bogus"] = 1
    with pytest.raises(SchemaError, match="bogus"):
        CLIPS_V1.from_rows([row])


def test_errors_and_pairs_specs():
    t = ERRORS_V1.from_rows(
        [
            {
                "error_id": "v1:probe",
                "input_uri": "/x.mp4",
                "item_id": "v1",
                "record_kind": "clips",
                "stage": "probe",
                "kind": "zero_byte",
                "message": "file is empty",
                "time": datetime.now(UTC),
            }
        ]
    )
    ERRORS_V1.validate(t)
    names = PAIRS_V1.column_names
    for col in ("source_latents", "target_latents_shape", "anchor_tokens_dtype", "score_mc"):
        assert col in names
    assert "| `latents` |" in CLIPS_V1.card_table()
