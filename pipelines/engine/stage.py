"""What a build stage is, the columns the engine itself adds, and the checks on both.

A stage is one small class: ``name``, ``inputs`` (columns it reads), ``outputs`` (columns it
adds or rewrites), ``drops`` (columns it consumes), ``resources()``, an optional ``setup()`` for
models, and ``process(rows)``. The engine (``engine/apply.py``) hands a stage only what it
declares: a list of row dicts holding its ``inputs`` (large binary columns such as decoded
frames arrive as read-only ``numpy.uint8`` views of the Arrow buffer, never as ``bytes``), each
with ``"_parent"``, its index in the batch. ``process`` returns (or yields, for fan-out) rows
holding its ``outputs`` and the ``_parent`` they came from; every other column travels through
untouched as Arrow. Rows already in error never reach a stage. This module has no Ray.

The columns a recipe's stages pass are declared once in the recipe's registry (``registry``,
a ``{name: Column}`` dict: ``clips/columns.py``, ``pairs/columns.py``); the engine declares its
own here: the error fields and the row accounting.

Errors travel as rows (CONVENTIONS.md rule 5): ``fail(row, SampleError)`` makes an error row of
this stage; later stages skip it and the writer files it in ``errors/v1``. Row accounting: a row
stands for ``row_weight`` rows of its input, and some row of each input announces how many rows
the input makes in all (``input_rows``; 0 = another row announces it), so the writers' sidecars
can tell when an input is complete (``engine/resume.py``).
"""

from __future__ import annotations

import sys
import traceback
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ClassVar

import pyarrow as pa

from datasets_spec.base import Column
from sama.errors import ErrorKind, FatalError, SampleError

if TYPE_CHECKING:
    from pipelines.engine.config import StageResources

Row = dict[str, Any]
Rows = list[Row]
Registry = dict[str, Column]
PARENT = "_parent"  # the input row (index in the batch) an output row came from


def _c(name: str, type_: pa.DataType, description: str) -> Column:
    return Column(name, type_, description, "engine", nullable=True)


ENGINE_COLUMNS: Registry = {
    c.name: c
    for c in (
        _c("input_rows", pa.int64(), "rows this input makes in all; 0 = another row announces it"),
        _c("row_weight", pa.int64(), "how many of those rows this row stands for"),
        _c("error_stage", pa.string(), "stage that failed (error rows only)"),
        _c("error_kind", pa.string(), "sama.errors.ErrorKind value (error rows only)"),
        _c("error_message", pa.string(), "why it failed (error rows only)"),
        _c("error_time", pa.timestamp("us", tz="UTC"), "when it failed"),
    )
}
ERROR_COLUMNS = ("error_stage", "error_kind", "error_message", "error_time")
ACCOUNTING_COLUMNS = ("input_rows", "row_weight")


def registry_with_engine(columns: Iterable[Column]) -> Registry:
    """A recipe's registry: its columns plus the engine's (error fields, accounting)."""
    return {**{c.name: c for c in columns}, **ENGINE_COLUMNS}


def in_flight(name: str, type_: pa.DataType, description: str, stage: str) -> Column:
    """A recipe's in-flight column (never written; nullable: an error row has none)."""
    return Column(name, type_, description, stage, nullable=True)


def spec_names(spec: Any, *names: str) -> tuple[str, ...]:
    """Names checked against a record spec (a typo fails at import, not mid-build)."""
    known = set(spec.column_names)
    bad = [n for n in names if n not in known]
    if bad:
        raise KeyError(f"{bad} are not {spec.id} columns")
    return names


def spec_tensor_names(spec: Any, name: str) -> tuple[str, str, str]:
    """The three stored columns (bytes, shape, dtype) of a tensor column of a record spec."""
    return spec_names(spec, name, f"{name}_shape", f"{name}_dtype")  # type: ignore[return-value]


class Stage:
    """Base class of the build stages (see the module docstring)."""

    name: ClassVar[str]
    inputs: ClassVar[tuple[str, ...]] = ()
    outputs: ClassVar[tuple[str, ...]] = ()
    drops: ClassVar[tuple[str, ...]] = ()
    engine_key: ClassVar[str] = ""  # which ``engine.<key>`` StageResources applies
    registry: ClassVar[Registry]  # where its columns are declared (the recipe's registry)
    describe_loads_model: ClassVar[bool] = False  # describe() needs setup() (a model) first

    def __init__(self, cfg: Any) -> None:
        self.cfg = cfg

    @classmethod
    def enabled(cls, cfg: Any) -> bool:
        return True

    def uses_actor(self) -> bool:
        """True when the stage holds a model and runs in an actor pool."""
        return False

    def resources(self) -> StageResources:
        return getattr(self.cfg.engine, self.engine_key)

    def setup(self) -> None:
        """Load models / open clients; called once per worker before ``process``."""

    def process(self, rows: Rows) -> Rows | Iterator[Rows]:
        raise NotImplementedError

    def describe(self) -> dict:
        """Provenance of what the stage loaded (after ``setup``); {} when nothing."""
        return {}

    # ---- helpers -------------------------------------------------------------------------
    def fail(self, row: Row, err: SampleError, weight: int | None = None) -> Row:
        """The error row of this stage for the input row ``row``."""
        message = err.message
        if err.stage and err.stage != self.name:
            message = f"{err.stage}: {message}"
        out: Row = {
            PARENT: row[PARENT],
            "error_stage": self.name,
            "error_kind": err.kind.value,
            "error_message": message,
            "error_time": datetime.now(UTC),
        }
        if weight is not None:
            out["row_weight"] = weight
        return out

    def map_rows(self, rows: Rows, fn: Callable[[Row], Row]) -> Rows:
        """``fn(row) -> its outputs`` for each row; a ``SampleError`` makes an error row, any
        other exception is retried ``engine.input_retries`` times, then becomes an
        ``internal_error`` row (``call_with_retries``)."""
        out = []
        for row in rows:
            try:
                produced = call_with_retries(fn, row, self.cfg.engine.input_retries, self.name)
            except SampleError as e:
                out.append(self.fail(row, e))
                continue
            produced[PARENT] = row[PARENT]
            out.append(produced)
        return out


def is_error(row: Row) -> bool:
    return row.get("error_kind") is not None


# ---- unexpected exceptions ------------------------------------------------------------------
def describe_exception(e: BaseException) -> str:
    """``Type: message (at file.py:123 in func)``: the traceback's last frame, for error rows."""
    frames = traceback.extract_tb(e.__traceback__)
    where = ""
    if frames:
        f = frames[-1]
        where = f" (at {f.filename.rsplit('/', 1)[-1]}:{f.lineno} in {f.name})"
    text = str(e).strip().splitlines()[0][:300] if str(e).strip() else ""
    return f"{type(e).__name__}: {text}{where}"


def internal_error(e: BaseException, stage: str) -> SampleError:
    print(f"sama build: {stage}: unexpected {describe_exception(e)}", file=sys.stderr, flush=True)
    return SampleError(ErrorKind.INTERNAL_ERROR, describe_exception(e), stage=stage)


def call_with_retries(fn: Callable[[Row], Row], row: Row, retries: int, stage: str) -> Row:
    """``fn(row)``; unexpected exceptions are retried, then raised as ``internal_error``."""
    for attempt in range(retries + 1):
        try:
            return fn(row)
        except (SampleError, FatalError):
            raise
        except Exception as e:  # noqa: BLE001 - becomes an error row, never silent
            if attempt == retries:
                raise internal_error(e, stage) from e
    raise AssertionError("unreachable")


# ---- checks --------------------------------------------------------------------------------
def check_plan(
    stages: list[Stage], available: Iterable[str], sink_inputs: Iterable[str]
) -> list[tuple[str, ...]]:
    """Check that each stage's inputs are produced upstream; return the columns after each.

    Raises ``FatalError`` naming the stage and the missing columns (a wiring bug, found before
    any work starts).
    """
    cols = list(dict.fromkeys(available))
    after: list[tuple[str, ...]] = []
    for st in stages:
        missing = [c for c in st.inputs if c not in cols]
        if missing:
            raise FatalError(
                f"stage {st.name!r} reads {missing}, which no earlier stage produces "
                f"(available: {cols})"
            )
        undeclared = [c for c in (*st.inputs, *st.outputs, *st.drops) if c not in st.registry]
        if undeclared:
            raise FatalError(f"stage {st.name!r} declares unknown columns {undeclared}")
        cols = [c for c in cols if c not in st.drops]
        cols += [c for c in st.outputs if c not in cols]
        after.append(tuple(cols))
    missing = [c for c in sink_inputs if c not in cols]
    if missing:
        raise FatalError(f"the writer needs {missing}, which no stage produces")
    return after


def check_rows(stage: Stage, rows: Rows, batch_size: int) -> None:
    """Strict mode: a good row carries exactly the stage's outputs; an error row its error
    fields and some of the stage's outputs (row accounting, the id of a clip it dropped);
    every row names a parent of the batch."""
    want = set(stage.outputs)
    allowed_error = set(ERROR_COLUMNS) | want
    for i, row in enumerate(rows):
        parent = row.get(PARENT)
        if not isinstance(parent, int) or not 0 <= parent < batch_size:
            raise FatalError(f"stage {stage.name!r} row {i}: {PARENT}={parent!r} is not a row of "
                             f"its batch of {batch_size}")  # fmt: skip
        have = set(row) - {PARENT}
        if is_error(row):
            extra = have - allowed_error
            if extra or not set(ERROR_COLUMNS) <= have:
                raise FatalError(
                    f"stage {stage.name!r} error row {i}: undeclared columns {sorted(extra)}"
                )
        elif have != want:
            raise FatalError(
                f"stage {stage.name!r} row {i}: produced columns differ from the declared ones; "
                f"missing {sorted(want - have)}, undeclared {sorted(have - want)}"
            )


def schema_for(names: Iterable[str], registry: Registry) -> pa.Schema:
    """Arrow schema of an in-flight batch (every column nullable: error rows leave gaps)."""
    fields = []
    for n in names:
        if n not in registry:
            raise KeyError(f"column {n!r} is declared in no registry")
        fields.append(pa.field(n, registry[n].type, nullable=True))
    return pa.schema(fields)
