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
    c = _Check(table, column, row_offset)
    rows, dims = c.shapes()
    rows, dims = c.within_bounds(rows, dims)
    codes, rows, dims = c.dtypes(rows, dims)
    c.sizes(rows, dims, codes, max_tensor_bytes)
    if column.name in table.column_names:
        c.lengths(table.column(column.name), rows, dims, codes)
    c.nbytes[~c.ok] = 0
    return CellReport(c.out.finish(), c.nbytes)


class _Check:
    """The rules of ``check_cells`` in order; ``ok`` marks the rows still passing."""

    def __init__(self, table: pa.Table, column, row_offset: int) -> None:
        self.name, self.layout, self.axes = column.name, column.layout, column.layout.split(",")
        self.bounds = tuple(int(b) for b in column.max_shape)
        self.base, self.out = row_offset, _Lines()
        self.shape_arr = table.column(f"{self.name}_shape").combine_chunks()
        self.dtype_arr = table.column(f"{self.name}_dtype").combine_chunks()
        self.nbytes = np.zeros(len(self.shape_arr), dtype=np.int64)
        has_shape, has_dtype = _valid(self.shape_arr), _valid(self.dtype_arr)
        in_table = self.name in table.column_names
        has_data = _valid(table.column(self.name)) if in_table else has_shape
        for i in np.flatnonzero((has_shape != has_dtype) | (has_shape != has_data)):
            self.add(
                "nulls",
                self.name,
                i,
                f"`{self.name}`, `{self.name}_shape` and `{self.name}_dtype` must be null together",
            )
        self.ok = has_shape & has_dtype & has_data

    def add(self, rule: str, column: str, i, text: str) -> None:
        self.out.add(rule, f"column {column!r} row {self.base + int(i)}: {text}")

    def shapes(self) -> tuple[np.ndarray, np.ndarray]:
        """One dimension per axis; -> (rows, dims [rows, ndim] int64)."""
        ndim = len(self.axes)
        lengths = pc.fill_null(pc.list_value_length(self.shape_arr), 0)
        lengths = lengths.to_numpy(zero_copy_only=False)
        for i in np.flatnonzero(self.ok & (lengths != ndim)):
            self.add(
                "ndim",
                f"{self.name}_shape",
                i,
                f"{int(lengths[i])} dimension(s), layout {self.layout} needs {ndim}",
            )
        self.ok &= lengths == ndim
        return np.flatnonzero(self.ok), _dims(self.shape_arr, self.ok, ndim)

    def within_bounds(self, rows: np.ndarray, dims: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Every dimension in [1, the spec's bound for its axis]."""
        bad = (dims < 1) | (dims > np.array(self.bounds, dtype=np.int64))
        for r in np.flatnonzero(bad.any(axis=1)):
            a = int(np.argmax(bad[r]))  # the first offending axis names the problem
            v = int(dims[r, a])
            why = (
                "every dimension must be >= 1"
                if v < 1
                else f"above the spec's bound {self.bounds[a]} for {self.axes[a]}"
            )
            self.add(
                "dims",
                f"{self.name}_shape",
                rows[r],
                f"dimension {v} on axis {self.axes[a]} of shape {dims[r].tolist()} ({why})",
            )
        good = ~bad.any(axis=1)
        self.ok[rows[~good]] = False
        return rows[good], dims[good]

    def dtypes(self, rows, dims) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """A known dtype; -> (dtype codes [all rows], rows, dims)."""
        codes = pc.fill_null(pc.index_in(self.dtype_arr, value_set=pa.array(_DTYPES)), -1)
        codes = codes.to_numpy(zero_copy_only=False)
        for i in np.flatnonzero(self.ok & (codes < 0)):
            self.add(
                "dtype",
                f"{self.name}_dtype",
                i,
                f"unknown dtype {self.dtype_arr[int(i)].as_py()!r}; allowed: {_DTYPES}",
            )
        keep = codes[rows] >= 0
        self.ok[rows[~keep]] = False
        return codes, rows[keep], dims[keep]

    def sizes(self, rows, dims, codes, cap: int) -> None:
        """Bytes per cell (Python ints) at most ``cap``; fills ``nbytes``."""
        counts = _products(dims, self.bounds)
        for i, count, d in zip(rows, counts, dims, strict=True):
            size = count * int(_ITEMSIZE[codes[i]])
            if size > cap:
                self.add(
                    "size",
                    f"{self.name}_shape",
                    i,
                    f"shape {d.tolist()} of "
                    f"{_DTYPES[codes[i]]} needs {size:,} bytes, above the cap of "
                    f"{cap:,} per tensor",
                )
                self.ok[i] = False
            else:
                self.nbytes[i] = size

    def lengths(self, data, rows, dims, codes) -> None:
        """Each read cell holds exactly the bytes its shape and dtype need."""
        lengths = pc.fill_null(pc.binary_length(data), 0).to_numpy(zero_copy_only=False)
        where = {int(i): d for i, d in zip(rows, dims, strict=True)}
        for i in np.flatnonzero(self.ok & (lengths.astype(np.int64) != self.nbytes)):
            self.add(
                "bytes",
                self.name,
                i,
                f"{int(lengths[i]):,} bytes, but shape "
                f"{where[int(i)].tolist()} of {_DTYPES[codes[i]]} needs "
                f"{int(self.nbytes[i]):,}",
            )
            self.ok[i] = False


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
