"""Inputs listed in bounded memory, then read as a Ray datasource in small blocks.

The driver streams the recipe's source (a manifest read in chunks, a directory listed in
parallel: ``clips/list_inputs.py``, ``pairs/list_pairs.py``) straight into the **declared
inputs table** ``ROOT/_state/<kind>/inputs/part-*.parquet`` (one row per input: the recipe's
listing columns plus ``row_index``), holding one chunk at a time: a 10M-row manifest lists in a
driver that stays well under 1 GB (``bench/bench_engine.py``). Two things need every row and are
kept compact:

- duplicate ids: 8-byte BLAKE2 hashes in sorted numpy arrays (``DuplicateFinder``); a repeated
  id becomes an error row under an id of its own (``<id>@row<N>``), so it is accounted for. A
  false "duplicate" from a hash collision has a chance of about n^2 / 2^65 (3e-6 at 10M rows)
  and would still be an accounted-for error row, never a lost input;
- the inputs a previous run finished (the resume ledger): dropped when the table is read.

``InputsDatasource`` reads that table in the workers, one read task per row group, and yields
blocks of ``engine.inputs_per_block`` rows (default 1: one video per task, so work spreads over
the cluster and a retry redoes one input, not a hundred).
"""

from __future__ import annotations

import hashlib
import posixpath
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipelines.engine.root import INPUTS_DIR, state_dir
from pipelines.engine.writer import open_atomic
from sama.errors import ErrorKind

ROW_INDEX = "row_index"
CHUNK_ROWS = 65_536  # rows per inputs-table file
GROUP_ROWS = 1_024  # rows per row group = per read task


class DuplicateFinder:
    """Online "seen this id before?" over millions of ids in ~8 bytes each."""

    def __init__(self, merge_every: int = 1 << 20) -> None:
        self.sorted = np.empty(0, np.uint64)
        self.recent: set[int] = set()
        self.merge_every = merge_every

    @staticmethod
    def key(text: str) -> int:
        return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little")

    def seen(self, text: str) -> bool:
        """True if ``text`` was added before; adds it otherwise."""
        k = self.key(text)
        if k in self.recent:
            return True
        i = np.searchsorted(self.sorted, np.uint64(k))
        if i < len(self.sorted) and self.sorted[i] == k:
            return True
        self.recent.add(k)
        if len(self.recent) >= self.merge_every:
            merged = np.concatenate([self.sorted, np.fromiter(self.recent, np.uint64)])
            merged.sort()
            self.sorted, self.recent = merged, set()
        return False


@dataclass(frozen=True)
class ListedInputs:
    """What listing wrote: the table's files and row groups, and the counts."""

    parts: tuple[tuple[str, int, int], ...]  # (path, row group, rows)
    total: int
    todo: int
    duplicates: int


def mark_duplicates(table: pa.Table, id_column: str, finder: DuplicateFinder, stage: str) -> tuple[pa.Table, int]:
    """Rows whose id was seen before become error rows under ``<id>@row<N>``."""
    ids = table.column(id_column).to_pylist()
    rows = table.column(ROW_INDEX).to_pylist()
    dup = [i for i, v in enumerate(ids) if v is not None and finder.seen(v)]
    if not dup:
        return table, 0
    from datetime import UTC, datetime

    new_ids = list(ids)
    cols = {n: table.column(n).to_pylist() for n in ("error_stage", "error_kind", "error_message", "error_time")}
    now = datetime.now(UTC)
    for i in dup:
        new_ids[i] = f"{ids[i]}@row{rows[i]}"
        cols["error_stage"][i] = stage
        cols["error_kind"][i] = ErrorKind.BAD_MANIFEST_ROW.value
        cols["error_message"][i] = f"duplicate id {ids[i]!r} in manifest row {rows[i]}"
        cols["error_time"][i] = now
    table = table.set_column(table.schema.get_field_index(id_column), id_column,
                             pa.array(new_ids, table.schema.field(id_column).type))  # fmt: skip
    for n, values in cols.items():
        table = table.set_column(table.schema.get_field_index(n), n,
                                 pa.array(values, table.schema.field(n).type))  # fmt: skip
    return table, len(dup)


def write_inputs(
    fs: Any, root: str, kind: str, chunks: Iterator[pa.Table], id_column: str, done: pa.Array,
    stage: str, on_chunk: Callable[[int], None] | None = None,
) -> ListedInputs:  # fmt: skip
    """Stream the source's chunks into the inputs table (see the module docstring)."""
    folder = posixpath.join(root, state_dir(kind), INPUTS_DIR)
    if fs.exists(folder):
        fs.rm(folder, recursive=True)
    finder = DuplicateFinder()
    parts: list[tuple[str, int, int]] = []
    total = todo = dups = 0
    buf: list[pa.Table] = []
    n_buf = 0

    def flush() -> None:
        nonlocal buf, n_buf
        if not n_buf:
            return
        table = pa.concat_tables(buf).combine_chunks()
        path = posixpath.join(folder, f"part-{len(set(p for p, _, _ in parts)):05d}.parquet")
        with open_atomic(fs, path) as f:
            pq.write_table(table, f, row_group_size=GROUP_ROWS, compression="zstd")
        for g, start in enumerate(range(0, table.num_rows, GROUP_ROWS)):
            parts.append((path, g, min(GROUP_ROWS, table.num_rows - start)))
        buf, n_buf = [], 0

    for chunk in chunks:
        if chunk.num_rows == 0:
            continue
        index = pa.array(np.arange(total, total + chunk.num_rows, dtype=np.int64))
        chunk = chunk.append_column(ROW_INDEX, index)
        chunk, n_dup = mark_duplicates(chunk, id_column, finder, stage)
        dups += n_dup
        total += chunk.num_rows
        if len(done):
            todo += chunk.num_rows - pc.sum(pc.is_in(chunk.column(id_column), value_set=done)
                                            .cast(pa.int64())).as_py()  # fmt: skip
        else:
            todo += chunk.num_rows
        buf.append(chunk)
        n_buf += chunk.num_rows
        if on_chunk:
            on_chunk(total)
        if n_buf >= CHUNK_ROWS:
            flush()
    flush()
    return ListedInputs(tuple(parts), total, todo, dups)


def read_part(fs: Any, path: str, group: int, id_column: str, done: pa.Array,
              block_rows: int) -> Iterator[pa.Table]:  # fmt: skip
    """One row group of the inputs table, minus finished inputs, in blocks of ``block_rows``."""
    with fs.open(path, "rb") as f:
        table = pq.ParquetFile(f).read_row_group(group)
    if len(done):
        table = table.filter(pc.invert(pc.is_in(table.column(id_column), value_set=done)))
    table = table.drop_columns([ROW_INDEX])
    for start in range(0, table.num_rows, block_rows):
        yield table.slice(start, block_rows)
