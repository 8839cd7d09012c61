"""The shared checks a reader runs before allocating anything: tensor cells (shape, dtype, bytes),
the provenance JSON, row-group sizes from the footer; the v2 specs and their preview image."""

from __future__ import annotations

import io
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from datasets_spec import CLIPS, CLIPS_V1, CLIPS_V2, PAIRS, PAIRS_V2, READABLE, SchemaError
from datasets_spec.cells import check_cells
from datasets_spec.checks import Limits, check_row_groups, parse_provenance, read_footer
from datasets_spec.preview import decode_preview, encode_preview
from datasets_spec.provenance import with_provenance
from datasets_spec.tensors import expected_nbytes
from tests.rows import clip_row

LATENTS = next(t for t in CLIPS_V1.tensor_columns if t.name == "latents")


def cells(shape, dtype="bfloat16", data=b"", *, with_data=True) -> list[str]:
    cols = {
        "latents_shape": pa.array([shape], pa.list_(pa.int32())),
        "latents_dtype": pa.array([dtype], pa.string()),
    }
    if with_data:
        cols["latents"] = pa.array([data], pa.large_binary())
    return [msg for _, msg in check_cells(pa.table(cols), LATENTS).problems]


def test_valid_cell_passes_and_reports_its_size():
    report = check_cells(
        pa.table(
            {
                "latents": pa.array([b"\0" * 96], pa.large_binary()),
                "latents_shape": pa.array([[2, 2, 3, 4]], pa.list_(pa.int32())),
                "latents_dtype": ["bfloat16"],
            }
        ),
        LATENTS,
    )
    assert report.problems == [] and report.nbytes.tolist() == [96]


@pytest.mark.parametrize(
    ("shape", "dtype", "data", "needle"),
    [
        ([65536] * 4, "bfloat16", b"", "dimension 65536 on axis C"),  # int64 product wraps to 0
        ([16, -3, 4, 6], "bfloat16", b"", "dimension -3 on axis T"),
        ([16, 0, 4, 6], "bfloat16", b"", "dimension 0 on axis T"),
        ([256, 2048, 1024, 1024], "bfloat16", b"", "above the cap"),  # 1 TiB over 0 bytes
        ([16, 3, 4, 6], "complex128", b"", "unknown dtype 'complex128'"),
        ([16, 3, 4], "bfloat16", b"", "3 dimension(s), layout C,T,H,W needs 4"),
        ([16, 3, 4, 6], "bfloat16", b"\0" * 10, "10 bytes, but shape [16, 3, 4, 6]"),
    ],
)
def test_each_hostile_cell_gets_its_line(shape, dtype, data, needle):
    (line,) = cells(shape, dtype, data)
    assert needle in line and "row 0" in line, line


def test_shapes_are_checked_without_the_bytes():
    assert cells([16, 3, 4, 6], with_data=False) == []
    assert "dimension -1" in cells([-1, 3, 4, 6], with_data=False)[0]


def test_expected_nbytes_uses_python_ints():
    assert expected_nbytes([65536] * 4, "bfloat16") == 2 * 65536**4  # numpy int64 gives 0
    with pytest.raises(ValueError, match="negative"):
        expected_nbytes([2, -1], "uint8")


def test_spec_validate_refuses_a_wrapping_shape():
    row = clip_row(0, np.random.default_rng(0))
    row["latents"], row["latents_shape"] = b"", [65536] * 4
    with pytest.raises(SchemaError, match="dimension 65536"):
        CLIPS_V1.validate(CLIPS_V1.from_rows([row]))


@pytest.mark.parametrize(
    ("raw", "needle"),
    [
        (b"42", "got a JSON number"),
        (b"[1, 2]", "got a JSON array"),
        (b"[" * 10_000 + b"]" * 10_000, "nested too deep"),
        (json.dumps({"a": [[[[{"b": 1}]]]]}).encode(), "deeper than 4"),
        (b"\xff\xfe", "not UTF-8"),
        (b"{nope", "not JSON"),
        (b"{" + b" " * 2_000_000 + b"}", "above the cap"),
    ],
)
def test_hostile_provenance_is_refused(raw, needle):
    with pytest.raises(SchemaError, match=needle):
        parse_provenance(raw, Limits(max_provenance_depth=4))


def test_provenance_object_passes():
    assert parse_provenance(b'{"spec": "clips/v2", "vae": {"id": "x"}}')["vae"] == {"id": "x"}
    assert parse_provenance(None) is None


def _shard(rows: int, row_group_rows: int, **write) -> pq.ParquetFile:
    rng = np.random.default_rng(0)
    prov = {
        "spec": "clips/v1",
        "sama_version": "0",
        "vae": {},
        "latent_norm": {},
        "siglip": {},
        "anchor_policy": {},
        "frame_policy": {},
        "resolution_policy": {},
        "build_config": {},
    }
    table = CLIPS_V1.from_rows([clip_row(i, rng) for i in range(rows)])
    buf = io.BytesIO()
    pq.write_table(
        table.cast(with_provenance(CLIPS_V1.schema, prov)),
        buf,
        row_group_size=row_group_rows,
        **write,
    )
    return pq.ParquetFile(io.BytesIO(buf.getvalue()))


def test_row_group_caps_come_from_the_footer():
    pf = _shard(4, 2, use_dictionary=["clip_id"])
    assert read_footer(pf, "clips").ok
    size = pf.metadata.row_group(0).total_byte_size
    (big, *_) = check_row_groups(pf.metadata, CLIPS_V1, Limits(max_row_group_bytes=size - 1))
    assert big.startswith("row group 0:") and "refusing to read it" in big
    (many, *_) = check_row_groups(pf.metadata, CLIPS_V1, Limits(max_row_group_rows=1))
    assert "2 rows, above the cap of 1" in many


def test_dictionary_encoded_tensor_is_refused():
    problems = check_row_groups(_shard(2, 2).metadata, CLIPS_V1)  # pyarrow's default: all
    assert any(
        "column 'latents': a tensor column must not be dictionary-encoded" in p for p in problems
    )


def test_footer_of_another_kind_or_unknown_version():
    pf = _shard(1, 1, use_dictionary=["clip_id"])
    ((check, msg),) = read_footer(pf, "pairs").problems
    assert check == "schema" and "pairs readers accept ['pairs/v1', 'pairs/v2']" in msg


def test_v2_specs_add_a_nullable_preview_image():
    assert CLIPS is CLIPS_V2 and PAIRS is PAIRS_V2
    assert READABLE["clips"] == (CLIPS_V1, CLIPS_V2)
    col = CLIPS_V2.column("preview")
    assert col.nullable and col.type == pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    assert set(CLIPS_V2.column_names) - set(CLIPS_V1.column_names) == {"preview"}
    from datasets import Image

    assert isinstance(PAIRS_V2.features()["preview"], Image)
    assert "preview" not in CLIPS_V1.features()


def test_encode_preview_is_a_small_jpeg():
    frame = np.zeros((480, 832, 3), np.uint8)
    frame[:, 400:] = (255, 0, 0)
    value = encode_preview(frame)
    assert value["path"] is None and value["bytes"][:2] == b"\xff\xd8"  # JPEG SOI marker
    pic = decode_preview(value)
    assert pic.shape == (148, 256, 3)  # long side 256, aspect kept
    assert pic[:, -10:, 0].mean() > 200 and pic[:, :10].mean() < 20
    assert decode_preview(encode_preview(np.full((8, 6), 77, np.uint8))).shape == (8, 6, 3)
    assert decode_preview(None) is None
    with pytest.raises(ValueError, match="uint8"):
        encode_preview(frame.astype(np.float32))
    with pytest.raises(ValueError, match=r"\[H, W\]"):
        encode_preview(np.zeros((4, 4, 2), np.uint8))
