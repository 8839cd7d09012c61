"""Crafted hostile shards: each breaks one rule a reader must enforce before allocating anything.

``write_hostile_set(root, provenance)`` writes one ``clips/v2`` shard per case under
``root/clips/`` (written with pyarrow directly, as an attacker would, around ``write_shard``
which refuses them) and returns ``{case: text the refusal must contain}``. Valid rows come from
``tests.fakes``; each case changes one thing:

- provenance that is a JSON number, a JSON array, or an object nested 10,000 deep;
- a latent shape of ``[65536] * 4`` over 0 bytes (its int64 product wraps to 0);
- a negative dimension; a 0-byte tensor whose shape needs a terabyte; an unknown dtype;
- a decompression bomb: a 136 kB zstd shard whose one row group is 4 GiB uncompressed.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from datasets_spec import CLIPS
from datasets_spec.base import PROVENANCE_KEY, SPEC_KEY
from tests.fakes import make_fake_clip_rows

CELL_BYTES = 16 << 20  # one bomb cell: [16, 8, 256, 256] bf16
BOMB_SHAPE = [16, 8, 256, 256]

CASES: dict[str, str] = {
    "prov_number": "provenance metadata must be a JSON object, got a JSON number",
    "prov_list": "provenance metadata must be a JSON object, got a JSON array",
    "prov_deep": "provenance metadata is nested too deep",
    "shape_wraps": "dimension 65536 on axis C",
    "negative_dim": "dimension -3 on axis T",
    "huge_empty": "above the cap of 2,147,483,648 per tensor",
    "unknown_dtype": "unknown dtype 'complex128'",
    "bomb": "MiB uncompressed (footer), above the cap of 1,024 MiB",
}


def _write(path: Path, table: pa.Table, prov: bytes, **kw) -> None:
    meta = {SPEC_KEY: CLIPS.id.encode(), PROVENANCE_KEY: prov}
    table = table.cast(CLIPS.schema).replace_schema_metadata(meta)
    strings = [f.name for f in table.schema if pa.types.is_string(f.type)]
    pq.write_table(table, path, compression="zstd", use_dictionary=strings, **kw)


def _rows(name: str, n: int = 2, **kw) -> pa.Table:
    return pa.Table.from_pylist(make_fake_clip_rows(n, prefix=name, **kw), schema=CLIPS.schema)


def _set(table: pa.Table, column: str, values: list) -> pa.Table:
    i = table.schema.get_field_index(column)
    return table.set_column(i, table.schema.field(i), pa.array(values, table.schema.field(i).type))


def _bomb(name: str, rows: int = 256) -> pa.Table:
    """4 GiB of zero latents held as 16 chunks that share one 256 MiB buffer."""
    per_chunk = 16
    data = pa.py_buffer(bytes(CELL_BYTES * per_chunk))
    offsets = pa.py_buffer((np.arange(per_chunk + 1, dtype=np.int64) * CELL_BYTES).tobytes())
    chunk = pa.LargeBinaryArray.from_buffers(pa.large_binary(), per_chunk, [None, offsets, data])
    small = _rows(name, 1)
    table = pa.concat_tables([small] * rows)
    ids = pa.array([f"{name}-{i}" for i in range(rows)])
    table = table.set_column(table.schema.get_field_index("clip_id"), "clip_id", ids)
    cols = {
        "latents": pa.chunked_array([chunk] * (rows // per_chunk)),
        "latents_shape": pa.array([BOMB_SHAPE] * rows, pa.list_(pa.int32())),
    }
    for c, v in cols.items():
        table = table.set_column(table.schema.get_field_index(c), c, v)
    return table


def write_hostile_set(root: Path, provenance: dict, *, channels: int = 4) -> dict[str, str]:
    """One shard per case under ``root/clips/``; returns ``CASES`` (what each refusal says)."""
    out = Path(root) / "clips"
    out.mkdir(parents=True, exist_ok=True)
    good = json.dumps(provenance, sort_keys=True).encode()
    deep = b'{"a":' * 10_000 + b"1" + b"}" * 10_000
    for case, prov in (("prov_number", b"42"), ("prov_list", b"[1, 2, 3]"), ("prov_deep", deep)):
        _write(out / f"{case}.parquet", _rows(case, channels=channels), prov)
    shapes = {
        "shape_wraps": [65536] * 4,
        "negative_dim": [channels, -3, 4, 6],
        "huge_empty": [256, 2048, 1024, 1024],
    }
    for case, shape in shapes.items():
        t = _set(_rows(case, 1, channels=channels), "latents_shape", [shape])
        _write(out / f"{case}.parquet", _set(t, "latents", [b""]), good)
    t = _set(_rows("unknown_dtype", 1, channels=channels), "latents_dtype", ["complex128"])
    _write(out / "unknown_dtype.parquet", t, good)
    _write(out / "bomb.parquet", _bomb("bomb"), good, row_group_size=1 << 20)
    return dict(CASES)


RSS_WRAPPER = (
    "import resource, subprocess, sys; "
    "rc = subprocess.run(sys.argv[1:]).returncode; "
    "print(f'MAX_RSS_KB={resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}', "
    "file=sys.stderr); sys.exit(rc)"
)


def run_measured(cmd: list[str], **kw) -> tuple[int, str, float]:
    """Run ``cmd`` in a fresh wrapper process -> (exit code, stdout + stderr, peak RSS in MiB of
    the command and its children)."""
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", RSS_WRAPPER, *cmd], capture_output=True, text=True, **kw
    )
    out = done.stdout + done.stderr
    kb = next(
        int(line.split("=")[1]) for line in out.splitlines() if line.startswith("MAX_RSS_KB=")
    )
    text = "\n".join(line for line in out.splitlines() if not line.startswith("MAX_RSS_KB="))
    return done.returncode, text, kb / 1024
