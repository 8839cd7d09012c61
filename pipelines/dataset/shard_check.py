"""One shard through ``sama validate``: footer first, then small columns, then (full) tensors.

The footer is checked by ``datasets_spec.checks.read_footer`` (the same check the trainer's
loader runs): spec, schema, provenance, row-group sizes. A shard whose footer fails is never
read further, so a decompression bomb costs a footer read. Then, one row group at a time:

- quick (``sama publish`` by default): only the small columns are read (ids, the input-id
  column, tensor shapes and dtypes). Tensor cells are checked on their shapes and dtypes, and
  the stored byte count of each tensor column is compared with what its shapes need using the
  footer's uncompressed size; nulls come from the footer statistics.
- full (``sama validate`` by default, ``sama publish --full-check``): whole row groups, every
  cell's byte length exactly, every float tensor finite, nulls counted.

Problems go to a collector as ``(check, message, shard)``; nothing here raises on bad data.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from datasets_spec import RecordSpec
from datasets_spec.cells import check_cells
from datasets_spec.checks import Limits, read_footer, tensor_bytes_problem
from datasets_spec.tensors import STORAGE_DTYPES

_FLOAT_DTYPES = ("bfloat16", "float16", "float32", "float64")
# cells.py rule -> validate check name
_CELL_CHECKS = {"bytes": "tensor_bytes", "nulls": "nulls"}

Add = Callable[..., None]  # add(check, message, shard, level="error")


def check_shard(
    pf: pq.ParquetFile,
    info,
    add: Add,
    on_rows: Callable[[RecordSpec, pa.Table], None],
    *,
    full: bool,
    check_finite: bool,
    limits: Limits,
    input_column: dict[str, str],
) -> RecordSpec | None:
    """Check the opened shard ``pf`` (``info``: a ``validate.ShardInfo``); ``on_rows(spec,
    table)`` gets each row group's key and input-id columns. Returns the spec if the footer
    passed."""
    footer = read_footer(pf, info.kind, limits)
    for check, msg in footer.problems:
        add(check, msg, info.path)
    for check, msg in footer.warnings:
        add(check, msg, info.path, "warning")
    info.provenance = footer.provenance
    if footer.spec is None:
        return None
    info.spec_id = footer.spec.id
    if any(check == "row_group" for check, _ in footer.problems):
        return footer.spec  # sizes the footer admits to are over the caps: read nothing
    spec = footer.spec
    small = _small_columns(spec, input_column[spec.kind])
    if not full:
        _nulls_from_statistics(pf.metadata, spec, info, add)
    for i in range(pf.num_row_groups):
        table = pf.read_row_group(i) if full else pf.read_row_group(i, columns=small)
        _check_row_group(pf.metadata, i, table, spec, info, add, full, check_finite)
        on_rows(spec, table)
        info.rows += table.num_rows
    info.checked = True
    return spec


def _small_columns(spec: RecordSpec, input_column: str) -> list[str]:
    names = {spec.key, input_column}
    if spec.kind == "errors":  # small strings: the views count curation apart from failures
        names |= {"stage", "kind"}
    for t in spec.tensor_columns:
        names |= {f"{t.name}_shape", f"{t.name}_dtype"}
    return [c for c in spec.column_names if c in names]


def _nulls_from_statistics(md: pq.FileMetaData, spec: RecordSpec, info, add: Add) -> None:
    required = {c.name for c in spec.columns if not c.nullable}
    for i in range(md.num_row_groups):
        rg = md.row_group(i)
        for j in range(rg.num_columns):
            c = rg.column(j)
            if c.path_in_schema not in required or c.statistics is None:
                continue
            if c.statistics.has_null_count and c.statistics.null_count:
                add(
                    "nulls", f"column {c.path_in_schema!r} has nulls but is not nullable", info.path
                )


def _check_row_group(md, i, table, spec, info, add, full, check_finite) -> None:
    base = info.rows  # row numbers are within the shard
    if full:
        for c in spec.columns:
            if not c.nullable and table.column(c.name).null_count:
                add("nulls", f"column {c.name!r} has nulls but is not nullable", info.path)
    for t in spec.tensor_columns:
        report = check_cells(table, t, row_offset=base)
        for rule, msg in report.problems:
            add(_CELL_CHECKS.get(rule, "tensor_shape"), msg, info.path)
        if report.problems:
            continue
        if not full:
            needed = int(report.nbytes.sum())
            problem = tensor_bytes_problem(md, i, t.name, needed)
            if problem:
                add("tensor_bytes", problem, info.path)
        elif check_finite:
            for row in nonfinite_rows(table, t.name):
                add("finite", f"column {t.name!r} row {base + row}: NaN or Inf values", info.path)


def nonfinite_rows(table: pa.Table, name: str) -> list[int]:
    """Rows whose float tensor holds NaN/Inf; bf16 is checked on its bit pattern (exponent).
    Call only after ``check_cells`` passed (dtypes known, byte lengths exact)."""
    data = table.column(name).to_pylist()
    dtypes = table.column(f"{name}_dtype").to_pylist()
    bad = []
    for i, (b, d) in enumerate(zip(data, dtypes, strict=True)):
        if b is None or d not in _FLOAT_DTYPES:
            continue
        arr = np.frombuffer(b, dtype=STORAGE_DTYPES[d])
        finite = ((arr & 0x7F80) != 0x7F80).all() if d == "bfloat16" else np.isfinite(arr).all()
        if not finite:
            bad.append(i)
    return bad
