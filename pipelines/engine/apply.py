"""One stage applied to one Arrow batch: the adapter between Arrow and a stage's Python rows.

CONVENTIONS.md rule 8: between stages a batch is Arrow, a stage turns into Python only the
columns it reads, and big tensors are never copied through ``bytes`` to move them. So:

- rows already in error skip the stage and keep their columns as they are (zero-copy);
- the stage gets only its declared ``inputs``; ``large_binary`` columns (decoded frames) arrive
  as read-only ``numpy.uint8`` views of the Arrow buffer (``to_rows``);
- the columns it does not read are taken from the input batch, not rebuilt: for a 1:1 stage
  (row i comes from row i) they are the input's own buffers, untouched; a fan-out stage takes
  them per output row (``Table.take``), and those are small (ids, probe fields: the frames are
  the fan-out stage's own output);
- a stage's binary outputs may be numpy arrays: a one-row batch wraps the array's memory as the
  Arrow buffer (``pa.py_buffer``), so frames cross into Arrow without a copy.

Failures (CONVENTIONS.md rule 5): a ``SampleError`` is an error row; an unexpected exception on
a row is retried ``engine.input_retries`` times in place and then becomes an ``internal_error``
row whose message names the exception and the traceback's last frame; a batch that fails as a
whole is retried row by row, so one bad input never takes its neighbours with it. A fan-out
stage that fails half-way keeps the rows it made and ends with one error row that announces
the input's row count. ``FatalError`` (a wiring bug) still stops the task.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipelines.engine.stage import (
    ACCOUNTING_COLUMNS,
    ERROR_COLUMNS,
    PARENT,
    Registry,
    Rows,
    Stage,
    check_rows,
    internal_error,
    schema_for,
)
from sama.errors import FatalError, SampleError

_BINARY = (pa.types.is_large_binary, pa.types.is_binary)


# ---- Arrow <-> rows ------------------------------------------------------------------------
def binary_views(arr: pa.ChunkedArray | pa.Array) -> list[np.ndarray | None]:
    """Each value of a binary column as a read-only uint8 view of its Arrow buffer."""
    chunks = arr.chunks if isinstance(arr, pa.ChunkedArray) else [arr]
    out: list[np.ndarray | None] = []
    for ch in chunks:
        if len(ch) == 0:
            continue
        validity, offsets_buf, data_buf = ch.buffers()[:3]
        off_type = np.int64 if pa.types.is_large_binary(ch.type) else np.int32
        offsets = np.frombuffer(offsets_buf, off_type)[ch.offset : ch.offset + len(ch) + 1]
        data = np.frombuffer(data_buf, np.uint8) if data_buf is not None else np.empty(0, np.uint8)
        data.setflags(write=False)  # other tables share this buffer (the pass-through columns)
        valid = ch.is_valid().to_numpy(zero_copy_only=False) if validity is not None else None
        for i in range(len(ch)):
            if valid is not None and not valid[i]:
                out.append(None)
            else:
                out.append(data[offsets[i] : offsets[i + 1]])
    return out


def to_rows(table: pa.Table, columns: tuple[str, ...]) -> Rows:
    """The rows a stage sees: its ``columns`` only, binary ones as numpy views, plus PARENT."""
    values: dict[str, list] = {}
    for name in columns:
        col = table.column(name)
        values[name] = binary_views(col) if any(t(col.type) for t in _BINARY) else col.to_pylist()
    return [
        {PARENT: i, **{name: values[name][i] for name in columns}} for i in range(table.num_rows)
    ]


def binary_array(values: list, type_: pa.DataType) -> pa.Array:
    """A binary Arrow array from bytes / numpy values; one numpy value is wrapped, not copied."""
    if not any(isinstance(v, np.ndarray) for v in values):
        return pa.array(values, type=type_)
    parts = [None if v is None else np.ascontiguousarray(v).reshape(-1).view(np.uint8) if
             isinstance(v, np.ndarray) else np.frombuffer(v, np.uint8) for v in values]  # fmt: skip
    lengths = np.array([0 if p is None else p.size for p in parts], np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    present = [p for p in parts if p is not None]
    data = present[0] if len(present) == 1 else np.concatenate(present or [np.empty(0, np.uint8)])
    validity = None
    if any(p is None for p in parts):
        mask = np.array([p is not None for p in parts])
        validity = pa.array(mask).buffers()[1]
    large = pa.LargeBinaryArray.from_buffers(
        pa.large_binary(), len(parts), [validity, pa.py_buffer(offsets), pa.py_buffer(data)]
    )
    return large if pa.types.is_large_binary(type_) else large.cast(type_)


def column_array(values: list, type_: pa.DataType) -> pa.Array:
    if any(t(type_) for t in _BINARY):
        return binary_array(values, type_)
    return pa.array(values, type=type_)


# ---- the adapter ---------------------------------------------------------------------------
def run_process(stage: Stage, rows: Rows, retries: int) -> Iterator[Rows]:
    """``stage.process(rows)`` as batches of output rows, with the failure rules above."""
    made: dict[int, int] = {}  # parent -> rows already yielded, error rows too (weights)
    counts: dict[int, int] = {}  # parent -> the row count its yielded rows announced
    try:
        result = stage.process(rows)
        if isinstance(result, list):
            yield result
            return
        for out in result:
            for r in out:
                p = r[PARENT]
                made[p] = made.get(p, 0) + int(r.get("row_weight") or 1)
                counts[p] = max(counts.get(p, 0), int(r.get("input_rows") or 0))
            yield out
    except FatalError:
        raise
    except Exception as e:  # noqa: BLE001 - each row below ends as output or an error row
        yield from _recover(stage, rows, e, made, counts, retries)


def _recover(stage: Stage, rows: Rows, e: Exception, made: dict[int, int], counts: dict[int, int],
             retries: int) -> Iterator[Rows]:  # fmt: skip
    """The rows of a failed ``process`` call that have no complete output yet: a fan-out row
    it failed midway gets one error row (its rows already made stay, never made twice); rows
    it never reached run again on their own; a lone row is retried, then an error row."""
    if "input_rows" in stage.outputs:  # fan-out: done once its rows add up to its count
        finished = {p for p, n in counts.items() if n and made[p] >= n}
    else:  # 1:1: done once yielded
        finished = set(made)
    midway = [r for r in rows if r[PARENT] in made and r[PARENT] not in finished]
    fresh = [r for r in rows if r[PARENT] not in made]
    if midway or len(fresh) < len(rows) or len(fresh) > 1:
        if midway:
            yield _error_rows(stage, midway, e, made, counts)
        for row in fresh:  # each on its own, so one bad input never takes its neighbours
            for out in run_process(stage, [{**row, PARENT: 0}], retries):
                yield [{**r, PARENT: row[PARENT]} for r in out]
        return
    if not isinstance(e, SampleError) and retries > 0:
        yield from run_process(stage, rows, retries - 1)
        return
    yield _error_rows(stage, rows, e, made, counts)


def _error_rows(stage: Stage, rows: Rows, e: Exception, made: dict[int, int],
                counts: dict[int, int]) -> Rows:  # fmt: skip
    """One error row per row; a fan-out one stands for the rows its input did not make: the
    rest of the count its rows announced, or itself (then it announces made + 1)."""
    err = e if isinstance(e, SampleError) else internal_error(e, stage.name)
    fan_out = "input_rows" in stage.outputs
    out = []
    for row in rows:
        bad = stage.fail(row, err)
        if fan_out:
            m, n = made.get(row[PARENT], 0), counts.get(row[PARENT], 0)
            bad |= {"input_rows": n, "row_weight": n - m} if n > m else {"input_rows": m + 1,
                                                                         "row_weight": 1}  # fmt: skip
        out.append(bad)
    return out


def apply_stage(
    stage: Stage, table: pa.Table, columns: tuple[str, ...], registry: Registry, *,
    strict: bool = False, retries: int = 1,
) -> Iterator[pa.Table]:  # fmt: skip
    """Run ``stage`` on ``table``; yield tables with exactly ``columns`` (the plan's)."""
    schema = schema_for(columns, registry)
    failed = pc.is_valid(table.column("error_kind")) if "error_kind" in table.column_names else None
    if failed is not None and pc.any(failed).as_py():
        good, bad = table.filter(pc.invert(failed)), table.filter(failed)
    else:
        good, bad = table, None
    if good.num_rows:
        rows = to_rows(good, stage.inputs)
        for out in run_process(stage, rows, retries):
            if strict:
                check_rows(stage, out, good.num_rows)
            if out:
                yield assemble(good, out, stage, schema)
    if bad is not None:
        yield project(bad, schema)


def assemble(good: pa.Table, out: Rows, stage: Stage, schema: pa.Schema) -> pa.Table:
    """The output table of a stage: its rows' columns, the rest taken from their parents."""
    parents = [r[PARENT] for r in out]
    identity = parents == list(range(good.num_rows))
    produced = set(stage.outputs) | set(ERROR_COLUMNS)
    arrays = []
    for field in schema:
        name = field.name
        if name in produced or (name in ACCOUNTING_COLUMNS and any(name in r for r in out)):
            values = [r.get(name) for r in out]
            if name in ACCOUNTING_COLUMNS and name not in stage.outputs:
                # an error row of a 1:1 stage stands for what its parent stood for
                inherited = good.column(name).take(parents).to_pylist()
                values = [v if v is not None else p for v, p in zip(values, inherited, strict=True)]
            arrays.append(column_array(values, field.type))
        elif name in good.column_names:
            col = good.column(name)
            arrays.append(col if identity else col.take(parents))
        else:
            arrays.append(pa.nulls(len(out), field.type))
    return pa.Table.from_arrays(arrays, schema=schema)


def project(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """``table`` with ``schema``'s columns: its own where it has them, nulls elsewhere."""
    n = table.num_rows
    arrays = [
        table.column(f.name) if f.name in table.column_names else pa.nulls(n, f.type)
        for f in schema
    ]
    return pa.Table.from_arrays(arrays, schema=schema)


def rows_to_table(rows: list[dict[str, Any]], schema: pa.Schema) -> pa.Table:
    """Rows (sources: the listing) to a typed table; missing values are null."""
    arrays = [column_array([r.get(f.name) for r in rows], f.type) for f in schema]
    return pa.Table.from_arrays(arrays, schema=schema)
