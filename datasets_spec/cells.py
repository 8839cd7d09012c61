"""Tensor cells checked before anything is allocated from them: shape, dtype, byte length.

A tensor cell is three stored columns (``x``, ``x_shape``, ``x_dtype``; ``tensors.py``). A
hostile or broken shard can claim any shape: negative dimensions, a shape whose int64 product
wraps to 0 (``[65536] * 4``), or a huge shape over 0 bytes that makes a reader allocate
terabytes (a padding buffer, ``torch.empty``). Every reader (``sama validate``, the trainer's
loader, ``RecordSpec.validate`` on write) runs :func:`check_cells` on the shape and dtype
columns first, and only then touches the bytes.

Rules, per non-null cell: ``x_shape`` has exactly one dimension per axis of the column's
layout, every dimension is >= 1 and <= the spec's bound for that axis (``TensorColumn.
max_shape``), ``x_dtype`` is one of ``tensors.STORAGE_DTYPES``, the byte count (a Python-int
product, never an int64 one) is <= ``max_tensor_bytes``, and, when the bytes are read,
``len(x)`` equals it exactly. The three columns are null together.

The checks are vectorised (pyarrow compute + numpy): the trainer runs them on every row of
every shard at start-up.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from datasets_spec.tensors import STORAGE_DTYPES

MAX_TENSOR_BYTES = 1 << 31  # one cell; a 4K, 1000-frame Wan latent is ~1 GB
MAX_EXAMPLES = 5  # problem lines kept per (column, rule); the rest are counted
_DTYPES = sorted(STORAGE_DTYPES)
_ITEMSIZE = np.array([STORAGE_DTYPES[d].itemsize for d in _DTYPES], dtype=np.int64)


@dataclass(frozen=True)
class CellReport:
    """What :func:`check_cells` found in one tensor column of one table."""

    problems: list[tuple[str, str]]  # (rule, line): rule in nulls|ndim|dims|dtype|size|bytes
    nbytes: np.ndarray  # [rows] int64 byte count of each valid cell (0 for null / bad cells)


class _Lines:
    def __init__(self) -> None:
        self.lines: list[tuple[str, str]] = []
        self.counts: dict[str, int] = {}

    def add(self, rule: str, text: str) -> None:
        n = self.counts[rule] = self.counts.get(rule, 0) + 1
        if n <= MAX_EXAMPLES:
            self.lines.append((rule, text))

    def finish(self) -> list[tuple[str, str]]:
        extra = [
            (r, f"... and {n - MAX_EXAMPLES} more ({r})")
            for r, n in self.counts.items()
            if n > MAX_EXAMPLES
        ]
        return self.lines + extra


def _valid(arr: pa.ChunkedArray | pa.Array) -> np.ndarray:
    return np.asarray(pc.is_valid(arr).to_numpy(zero_copy_only=False), dtype=bool)


def check_cells(
    table: pa.Table,
    column,
    *,
    row_offset: int = 0,
    max_tensor_bytes: int = MAX_TENSOR_BYTES,
) -> CellReport:
    """Check tensor ``column`` (a ``TensorColumn``) in ``table``, which holds at least
    ``{name}_shape`` and ``{name}_dtype`` and, if read, ``{name}``. Row numbers in the messages
    are ``row_offset +`` the table row. Never raises on bad values."""
    name, axes = column.name, column.layout.split(",")
    ndim, bounds = len(axes), tuple(int(b) for b in column.max_shape)
    out = _Lines()
    shape_arr = table.column(f"{name}_shape").combine_chunks()
    dtype_arr = table.column(f"{name}_dtype").combine_chunks()
    n = len(shape_arr)
    nbytes = np.zeros(n, dtype=np.int64)
    has_shape, has_dtype = _valid(shape_arr), _valid(dtype_arr)
    has_data = _valid(table.column(name)) if name in table.column_names else has_shape
    for i in np.flatnonzero((has_shape != has_dtype) | (has_shape != has_data))[:MAX_EXAMPLES]:
        out.add(
            "nulls",
            f"column {name!r} row {row_offset + i}: `{name}`, `{name}_shape` and "
            f"`{name}_dtype` must be null together",
        )
    ok = has_shape & has_dtype & has_data
    lengths = pc.fill_null(pc.list_value_length(shape_arr), 0).to_numpy(zero_copy_only=False)
    for i in np.flatnonzero(ok & (lengths != ndim)):
        out.add(
            "ndim",
            f"column '{name}_shape' row {row_offset + i}: {int(lengths[i])} "
            f"dimension(s), layout {column.layout} needs {ndim}",
        )
    ok &= lengths == ndim
    dims = _dims(shape_arr, ok, ndim)  # [k, ndim] int64 for the rows in ok
    rows = np.flatnonzero(ok)
    low, high = dims < 1, dims > np.array(bounds, dtype=np.int64)
    bad = low | high
    for r in np.flatnonzero(bad.any(axis=1)):
        a = int(np.argmax(bad[r]))  # the first offending axis names the problem
        i, v = rows[r], int(dims[r, a])
        why = (
            "every dimension must be >= 1"
            if v < 1
            else f"above the spec's bound {bounds[a]} for {axes[a]}"
        )
        out.add(
            "dims",
            f"column '{name}_shape' row {row_offset + i}: dimension {v} on axis "
            f"{axes[a]} of shape {dims[r].tolist()} ({why})",
        )
    good = ~(low | high).any(axis=1)
    ok[rows[~good]] = False
    rows, dims = rows[good], dims[good]
    codes = pc.fill_null(pc.index_in(dtype_arr, value_set=pa.array(_DTYPES)), -1)
    codes = codes.to_numpy(zero_copy_only=False)
    for i in np.flatnonzero(ok & (codes < 0)):
        out.add(
            "dtype",
            f"column '{name}_dtype' row {row_offset + i}: unknown dtype "
            f"{dtype_arr[int(i)].as_py()!r}; allowed: {_DTYPES}",
        )
    keep = codes[rows] >= 0
    ok[rows[~keep]] = False
    rows, dims = rows[keep], dims[keep]
    counts = _products(dims, bounds)
    sizes = [c * int(_ITEMSIZE[codes[i]]) for c, i in zip(counts, rows, strict=True)]
    for i, size, d in zip(rows, sizes, dims, strict=True):
        if size > max_tensor_bytes:
            out.add(
                "size",
                f"column '{name}_shape' row {row_offset + i}: shape {d.tolist()} of "
                f"{_DTYPES[codes[i]]} needs {size:,} bytes, above the cap of "
                f"{max_tensor_bytes:,} per tensor",
            )
            ok[i] = False
        else:
            nbytes[i] = size
    if name in table.column_names:
        _check_lengths(
            table.column(name),
            name,
            ok,
            nbytes,
            dims_of=(rows, dims),
            out=out,
            row_offset=row_offset,
            dtypes=codes,
        )
    nbytes[~ok] = 0
    return CellReport(out.finish(), nbytes)


def _dims(shape_arr: pa.Array, ok: np.ndarray, ndim: int) -> np.ndarray:
    if not ok.any():
        return np.zeros((0, ndim), dtype=np.int64)
    kept = pc.filter(shape_arr, pa.array(ok))
    flat = pc.fill_null(kept.flatten(), 0)  # a null dimension counts as 0 (refused)
    return flat.to_numpy(zero_copy_only=False).astype(np.int64).reshape(-1, ndim)


def _products(dims: np.ndarray, bounds: tuple[int, ...]) -> list[int]:
    """Element counts as Python ints. The dims are already within ``bounds``: when the product
    of the bounds fits in int64 the vectorised product is exact, otherwise each row is
    multiplied in Python ints."""
    if math.prod(bounds) < 1 << 62:
        return [int(x) for x in np.prod(dims, axis=1, dtype=np.int64)]
    return [math.prod(int(x) for x in row) for row in dims]


def _check_lengths(data, name, ok, nbytes, *, dims_of, out, row_offset, dtypes) -> None:
    lengths = pc.fill_null(pc.binary_length(data), 0).to_numpy(zero_copy_only=False)
    rows, dims = dims_of
    where = {int(i): d for i, d in zip(rows, dims, strict=True)}
    for i in np.flatnonzero(ok & (lengths.astype(np.int64) != nbytes)):
        out.add(
            "bytes",
            f"column {name!r} row {row_offset + i}: {int(lengths[i]):,} bytes, but "
            f"shape {where[int(i)].tolist()} of {_DTYPES[dtypes[i]]} needs "
            f"{int(nbytes[i]):,}",
        )
        ok[i] = False
