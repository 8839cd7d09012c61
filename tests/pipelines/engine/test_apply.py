"""``engine/apply.py``: what a stage sees of an Arrow batch and what comes out of it.

The stages here are small test stages on a test registry (no recipe, no Ray): a 1:1 stage
(``Double``), one that reads the frames (``ReadFrames``) and a fan-out one (``Split``).

Legend: ``frames_N`` = the flat uint8 bytes of one row's frames.
"""

from __future__ import annotations

import tracemalloc
from collections.abc import Iterator
from datetime import UTC, datetime
from types import SimpleNamespace

import numpy as np
import pyarrow as pa
import pytest

from datasets_spec.base import Column
from pipelines.engine.apply import apply_stage, binary_array, binary_views
from pipelines.engine.stage import (
    PARENT,
    Row,
    Rows,
    Stage,
    describe_exception,
    registry_with_engine,
)
from sama.errors import ErrorKind, FatalError, SampleError


def _c(name: str, type_: pa.DataType) -> Column:
    return Column(name, type_, "test column", "test", nullable=True)


REG = registry_with_engine(
    [
        _c("item_id", pa.string()),
        _c("n", pa.int64()),
        _c("frames", pa.large_binary()),
        _c("doubled", pa.int64()),
        _c("part", pa.int64()),
        _c("size", pa.int64()),
        _c("extra", pa.int64()),
    ]
)
BASE = ("item_id", "n", "frames", "input_rows", "row_weight", "error_stage", "error_kind",
        "error_message", "error_time")  # fmt: skip


def _cfg(retries: int = 1) -> SimpleNamespace:
    return SimpleNamespace(engine=SimpleNamespace(input_retries=retries))


class Double(Stage):
    """1:1: ``doubled = 2 n``; records what it saw."""

    name = "double"
    registry = REG
    inputs = ("n",)
    outputs = ("doubled",)

    def __init__(self, cfg) -> None:
        super().__init__(cfg)
        self.seen: list[Row] = []
        self.calls = 0

    def process(self, rows: Rows) -> Rows:
        self.calls += 1
        self.seen += [dict(r) for r in rows]
        return self.map_rows(rows, self._one)

    def _one(self, row: Row) -> Row:
        if row["n"] < 0:
            raise SampleError(ErrorKind.TOO_SHORT, f"n={row['n']} is negative", stage=self.name)
        return {"doubled": 2 * row["n"]}


class ReadFrames(Stage):
    name = "read_frames"
    registry = REG
    inputs = ("frames",)
    outputs = ("size",)

    def process(self, rows: Rows) -> Rows:
        self.seen = rows
        return [{PARENT: r[PARENT], "size": None if r["frames"] is None else int(r["frames"].sum())}
                for r in rows]  # fmt: skip


class Split(Stage):
    """Fan-out: ``n`` rows per input, yielded one at a time; ``fail_after`` rows, it raises
    ``error`` (a SampleError or any exception). ``announce="each"``: every row announces the
    count (like MakeClips, which plans first); ``"last"``: only the last (like CutClips)."""

    name = "split"
    registry = REG
    inputs = ("item_id", "n")
    outputs = ("part", "input_rows", "row_weight")

    def __init__(self, cfg, fail_after: dict | None = None, error: Exception | None = None,
                 announce: str = "each") -> None:  # fmt: skip
        super().__init__(cfg)
        self.fail_after, self.error, self.announce = fail_after or {}, error, announce
        self.calls = 0

    def process(self, rows: Rows) -> Iterator[Rows]:
        self.calls += 1
        for row in rows:
            n = row["n"]
            if n == 0:  # like a video without a usable shot
                err = SampleError(ErrorKind.NO_USABLE_SHOT, "no parts", stage=self.name)
                yield [self.fail(row, err) | {"input_rows": 1, "row_weight": 1}]
            for k in range(n):
                if self.fail_after.get(row["item_id"]) == k:
                    raise self.error
                count = n if self.announce == "each" or k == n - 1 else 0
                yield [{PARENT: row[PARENT], "part": k, "input_rows": count, "row_weight": 1}]


def _table(ns: list[int], frame_bytes: int = 16, errors: dict[int, str] | None = None) -> pa.Table:
    """Rows ``item_id=i<k>``, ``n``, ``frames`` (``frame_bytes`` each, value = row index)."""
    errors = errors or {}
    k = len(ns)
    frames = [np.full(frame_bytes, i, np.uint8).tobytes() for i in range(k)]
    cols = {
        "item_id": [f"i{i}" for i in range(k)],
        "n": ns,
        "frames": pa.array(frames, pa.large_binary()),
        "input_rows": [1] * k,
        "row_weight": [1] * k,
        "error_stage": [("earlier" if i in errors else None) for i in range(k)],
        "error_kind": [errors.get(i) for i in range(k)],
        "error_message": [("failed before" if i in errors else None) for i in range(k)],
        "error_time": [(datetime.now(UTC) if i in errors else None) for i in range(k)],
    }
    schema = pa.schema([pa.field(n, REG[n].type) for n in BASE])
    return pa.Table.from_pydict(cols, schema=schema)


def _after(stage: Stage, columns: tuple[str, ...] = BASE) -> tuple[str, ...]:
    cols = [c for c in columns if c not in stage.drops]
    return (*cols, *[c for c in stage.outputs if c not in cols])


def _run(stage: Stage, table: pa.Table, strict: bool = True, retries: int = 1) -> pa.Table:
    cols = _after(stage)
    out = list(apply_stage(stage, table, cols, REG, strict=strict, retries=retries))
    for t in out:
        assert t.column_names == list(cols)
    return pa.concat_tables(out) if out else pa.table({})


def _address(col: pa.ChunkedArray) -> list[int]:
    return [ch.buffers()[2].address for ch in col.chunks]


# ---- what a stage sees ----------------------------------------------------------------------


def test_a_stage_sees_exactly_its_declared_inputs():
    st = Double(_cfg())
    out = _run(st, _table([1, 2, 3]))
    assert st.seen == [{PARENT: 0, "n": 1}, {PARENT: 1, "n": 2}, {PARENT: 2, "n": 3}]
    assert out.column("doubled").to_pylist() == [2, 4, 6]
    assert out.column("item_id").to_pylist() == ["i0", "i1", "i2"]


def test_binary_columns_arrive_as_read_only_numpy_views_of_the_arrow_buffer():
    table = _table([1, 2, 3], frame_bytes=1000)
    st = ReadFrames(_cfg())
    out = _run(st, table)
    (chunk,) = table.column("frames").chunks
    data = chunk.buffers()[2]
    for i, r in enumerate(st.seen):
        frames_N = r["frames"]
        assert isinstance(frames_N, np.ndarray) and frames_N.dtype == np.uint8
        assert not frames_N.flags.writeable
        assert frames_N.ctypes.data == data.address + i * 1000  # a view, not a copy
        assert frames_N.shape == (1000,) and (frames_N == i).all()
        with pytest.raises(ValueError):
            frames_N[0] = 7
    assert out.column("size").to_pylist() == [0, 1000, 2000]


def test_binary_views_handle_nulls_slices_and_several_chunks():
    a = pa.array([b"ab", None, b"", b"xyz"], pa.large_binary())
    b = pa.array([b"q", b"rs"], pa.binary())
    views = binary_views(pa.chunked_array([a.slice(1), a.slice(0, 1)]))
    assert [None if v is None else v.tobytes() for v in views] == [None, b"", b"xyz", b"ab"]
    assert [v.tobytes() for v in binary_views(b)] == [b"q", b"rs"]


def test_columns_a_stage_does_not_read_pass_through_zero_copy():
    """A 1:1 stage that does not declare ``frames``: the output's frames are the input's own
    Arrow buffer, the stage's rows never hold them, and no Python ``bytes`` of their size is
    allocated (tracemalloc sees Python allocations, not Arrow's)."""
    table = _table([1, 2, 3, 4], frame_bytes=2_000_000)  # 8 MB of frames
    st = Double(_cfg())
    tracemalloc.start()
    try:
        out = _run(st, table)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert _address(out.column("frames")) == _address(table.column("frames"))
    assert all("frames" not in r for r in st.seen)
    assert peak < 1_000_000, f"{peak} bytes of Python objects for 8 MB of frames"


def test_rows_already_in_error_skip_the_stage_and_keep_their_columns():
    table = _table([1, 2, 3], errors={1: "decode_error"})
    st = Double(_cfg())
    out = _run(st, table)
    assert [r["n"] for r in st.seen] == [1, 3]
    by_id = {r["item_id"]: r for r in out.to_pylist()}
    assert by_id["i1"]["error_kind"] == "decode_error" and by_id["i1"]["doubled"] is None
    assert by_id["i1"]["error_stage"] == "earlier" and by_id["i1"]["frames"] == b"\x01" * 16
    assert by_id["i0"]["doubled"] == 2 and by_id["i2"]["doubled"] == 6


# ---- failures -------------------------------------------------------------------------------


def test_a_sample_error_becomes_an_error_row_of_the_stage():
    out = _run(Double(_cfg()), _table([1, -5, 3]))
    rows = out.to_pylist()
    assert [r["doubled"] for r in rows] == [2, None, 6]
    bad = rows[1]
    assert (bad["error_stage"], bad["error_kind"]) == ("double", "too_short")
    assert bad["error_message"] == "n=-5 is negative" and bad["error_time"] is not None
    assert bad["item_id"] == "i1" and bad["row_weight"] == 1 and bad["input_rows"] == 1


class Flaky(Stage):
    """Raises ``ZeroDivisionError`` on rows with ``n == 0`` (through ``map_rows``), or on the
    whole call (``whole=True``); counts its calls."""

    name = "flaky"
    registry = REG
    inputs = ("n",)
    outputs = ("doubled",)

    def __init__(self, cfg, whole: bool = False) -> None:
        super().__init__(cfg)
        self.whole, self.calls = whole, []

    def process(self, rows: Rows) -> Rows:
        if self.whole:
            self.calls.append([r["n"] for r in rows])
            return [{PARENT: r[PARENT], "doubled": self._one(r)} for r in rows]
        return self.map_rows(rows, lambda r: {"doubled": self._counted(r)})

    def _counted(self, row: Row) -> int:
        self.calls.append([row["n"]])
        return self._one(row)

    def _one(self, row: Row) -> int:
        return 2 * row["n"] if row["n"] else 1 // row["n"]


@pytest.mark.parametrize("whole", [False, True])
def test_an_unexpected_exception_is_retried_then_becomes_an_internal_error_row(whole, capsys):
    st = Flaky(_cfg(retries=2), whole=whole)
    out = _run(st, _table([0]), retries=2)
    assert len(st.calls) == 3  # the first try and two retries
    (row,) = out.to_pylist()
    assert (row["error_stage"], row["error_kind"]) == ("flaky", "internal_error")
    msg = row["error_message"]
    assert msg.startswith("ZeroDivisionError: integer division or modulo by zero (at ")
    assert "test_apply.py:" in msg and msg.endswith(" in _one)")  # where it was raised
    assert "unexpected ZeroDivisionError" in capsys.readouterr().err  # never silent


def test_describe_exception_names_the_type_message_and_last_frame():
    def inner():
        raise KeyError("missing thing")

    try:
        inner()
    except KeyError as e:
        text = describe_exception(e)
    assert text.startswith("KeyError: 'missing thing' (at test_apply.py:")
    assert text.endswith(" in inner)")


def test_a_batch_that_fails_as_a_whole_is_retried_row_by_row():
    st = Flaky(_cfg(retries=1), whole=True)
    out = _run(st, _table([1, 0, 3]), retries=1)
    assert st.calls == [[1, 0, 3], [1], [0], [0], [3]]
    rows = {r["item_id"]: r for r in out.to_pylist()}
    assert rows["i0"]["doubled"] == 2 and rows["i2"]["doubled"] == 6
    assert rows["i1"]["error_kind"] == "internal_error" and rows["i1"]["doubled"] is None
    assert out.num_rows == 3


@pytest.mark.parametrize("announce", ["each", "last"])
@pytest.mark.parametrize(
    "error",
    [SampleError(ErrorKind.DECODE_ERROR, "broken at frame 2", stage="split"), RuntimeError("boom")],
)
def test_a_fan_out_stage_failing_midway_keeps_its_rows_and_announces_the_count(error, announce):
    """The rows made stay; one error row makes the input's rows add up to what it announces:
    the rest of an announced count (``each``), or made + 1 when nothing was announced yet."""
    st = Split(_cfg(retries=1), fail_after={"i0": 2}, error=error, announce=announce)
    rows = _run(st, _table([5]), retries=1).to_pylist()
    good = [r for r in rows if r["error_kind"] is None]
    (bad,) = [r for r in rows if r["error_kind"] is not None]
    assert [r["part"] for r in good] == [0, 1]
    kind = "decode_error" if isinstance(error, SampleError) else "internal_error"
    assert (bad["error_kind"], bad["error_stage"]) == (kind, "split")
    if announce == "each":
        assert (bad["input_rows"], bad["row_weight"]) == (5, 3)  # stands for the 3 not made
    else:
        assert (bad["input_rows"], bad["row_weight"]) == (3, 1)  # 2 rows + this one
    announced = max(r["input_rows"] for r in rows)
    assert sum(r["row_weight"] for r in rows) == announced  # the input is complete
    assert st.calls == 1  # rows were made: never re-run (it would make them twice)


def test_a_fan_out_failure_in_a_batch_leaves_the_finished_inputs_alone():
    """Batch of four inputs: the first finishes, the second is an error row, the third fails
    midway, the fourth never started. The first two keep exactly their rows (no error row, no
    second error row), the third gets its rows and one error row, the fourth runs alone."""
    st = Split(_cfg(retries=0), fail_after={"i2": 1}, error=RuntimeError("boom"))
    rows = _run(st, _table([2, 0, 3, 2]), retries=0).to_pylist()
    by: dict[str, list] = {}
    for r in rows:
        by.setdefault(r["item_id"], []).append((r["part"], r["error_kind"], r["input_rows"],
                                                r["row_weight"]))  # fmt: skip
    assert by["i0"] == [(0, None, 2, 1), (1, None, 2, 1)]
    assert by["i1"] == [(None, "no_usable_shot", 1, 1)]
    assert by["i2"] == [(0, None, 3, 1), (None, "internal_error", 3, 2)]
    assert by["i3"] == [(0, None, 2, 1), (1, None, 2, 1)]
    assert st.calls == 2  # the batch, then the input it never reached on its own


def test_a_fatal_error_stops_the_task():
    class Wiring(Stage):
        name = "wiring"
        registry = REG
        inputs = ("n",)
        outputs = ("doubled",)

        def process(self, rows):
            raise FatalError("a wiring bug")

    with pytest.raises(FatalError, match="wiring bug"):
        _run(Wiring(_cfg()), _table([1, 2]))


# ---- strict mode --------------------------------------------------------------------------


def _stage_returning(rows_out: Rows) -> Stage:
    class Fixed(Stage):
        name = "fixed"
        registry = REG
        inputs = ("n",)
        outputs = ("doubled",)

        def process(self, rows):
            return rows_out

    return Fixed(_cfg())


@pytest.mark.parametrize(
    ("rows_out", "message"),
    [
        ([{PARENT: 0, "doubled": 2, "extra": 1}], r"undeclared \['extra'\]"),
        ([{PARENT: 0}], r"missing \['doubled'\]"),
        ([{PARENT: 4, "doubled": 2}], "not a row of its batch"),
        ([{PARENT: 0, "error_stage": "x", "error_kind": "timeout", "error_message": "m",
           "error_time": datetime.now(UTC), "extra": 1}], r"error row 0: undeclared columns \['extra'\]"),
    ],
)  # fmt: skip
def test_strict_mode_catches_columns_a_stage_did_not_declare(rows_out, message):
    with pytest.raises(FatalError, match=message):
        _run(_stage_returning(rows_out), _table([1]), strict=True)
    if "not a row" not in message:  # without strict mode the same rows pass
        _run(_stage_returning(rows_out), _table([1]), strict=False)


# ---- binary_array ---------------------------------------------------------------------------


def test_binary_array_wraps_one_numpy_value_without_a_copy():
    clip_THWC = np.arange(2 * 4 * 4 * 3, dtype=np.uint8).reshape(2, 4, 4, 3)
    clip_THWC.setflags(write=False)  # frames from the sandbox are read-only maps
    arr = binary_array([clip_THWC], pa.large_binary())
    assert arr.buffers()[2].address == clip_THWC.ctypes.data
    assert arr[0].as_py() == clip_THWC.tobytes()
    mixed = binary_array([np.array([1, 2], np.uint16), None, b"xy"], pa.binary())
    assert mixed.type == pa.binary()
    assert mixed.to_pylist() == [np.array([1, 2], np.uint16).tobytes(), None, b"xy"]
    assert binary_array([b"a", None], pa.large_binary()).to_pylist() == [b"a", None]
