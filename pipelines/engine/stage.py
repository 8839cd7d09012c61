"""What a build stage is, the columns that flow between stages, and the checks on both.

A stage is one small class: ``name``, ``inputs`` (columns it reads), ``outputs`` (columns it
adds or rewrites), ``drops`` (columns it consumes), ``resources()``, an optional ``setup()`` for
models, and ``process(batch) -> batch`` (or an iterator of batches, for fan-out). A batch is a
list of row dicts. The runner maps stages onto Ray Data; this module has no Ray.

Columns are declared once: the ``clips/v1`` ones come from the spec, the in-flight ones
(probe results, shot lists, decoded frames, error fields, row accounting) are declared in
``INTERNAL`` below. ``check_plan`` verifies before launch that every stage's inputs are produced
upstream; ``check_batch`` (strict mode, tests) that a batch carries exactly the columns declared.

Errors travel as rows (CONVENTIONS.md rule 5): a ``SampleError`` turns the row into an error row
(``error_*`` columns set); later stages pass error rows through untouched and the writer files
them in ``errors/v1``. Row accounting (``input_rows``, ``row_weight``) lets the writer tell when
every row of an input has arrived, which is what resume markers need.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ClassVar

import pyarrow as pa

from datasets_spec import CLIPS_V1
from datasets_spec.base import Column
from sama.errors import FatalError, SampleError

if TYPE_CHECKING:
    from pipelines.config import BuildConfig, StageResources

Row = dict[str, Any]
Batch = list[Row]


def _c(name: str, type_: pa.DataType, description: str, stage: str) -> Column:
    return Column(name, type_, description, stage, nullable=True)


# In-flight columns that are not part of clips/v1 (declared once, here).
INTERNAL: dict[str, Column] = {
    c.name: c
    for c in (
        _c("manifest_caption", pa.string(), "caption given by the manifest", "list_inputs"),
        _c(
            "input_rows",
            pa.int64(),
            "rows this input produces in all; 0 = another row of the input announces it",
            "list_inputs",
        ),
        _c("row_weight", pa.int64(), "how many of those rows this row stands for", "list_inputs"),
        _c("error_stage", pa.string(), "stage that failed (error rows only)", "any"),
        _c("error_kind", pa.string(), "sama.errors.ErrorKind value (error rows only)", "any"),
        _c("error_message", pa.string(), "why it failed (error rows only)", "any"),
        _c("error_time", pa.timestamp("us", tz="UTC"), "when it failed", "any"),
        _c("video_num_frames", pa.int64(), "frame count of the source", "probe"),
        _c("video_duration_s", pa.float64(), "duration of the source", "probe"),
        _c("video_codec", pa.string(), "codec of the source", "probe"),
        _c("video_rotation", pa.int32(), "display rotation of the source", "probe"),
        _c("video_size_bytes", pa.int64(), "file size of the source", "probe"),
        _c("video_backend", pa.string(), "decoder chosen for the source", "probe"),
        _c("shot_starts", pa.list_(pa.int64()), "first frame of each shot", "detect_shots"),
        _c("shot_ends", pa.list_(pa.int64()), "end frame (exclusive) of each shot", "detect_shots"),
        _c("frames", pa.large_binary(), "clip frames, uint8 T,H,W,3 raw bytes", "make_clips"),
        _c("frames_shape", pa.list_(pa.int32()), "shape of `frames`", "make_clips"),
    )
}
ERROR_COLUMNS = ("error_stage", "error_kind", "error_message", "error_time")
ACCOUNTING_COLUMNS = ("input_rows", "row_weight")
COLUMNS: dict[str, Column] = {**{c.name: c for c in CLIPS_V1.columns}, **INTERNAL}
# clips/v1 columns a row must carry to be written (the nullable text columns may be absent)
REQUIRED_CLIP_COLUMNS = tuple(c.name for c in CLIPS_V1.columns if not c.nullable)


def clip_columns(*names: str) -> tuple[str, ...]:
    """Names checked against ``clips/v1`` (a typo fails at import, not mid-build)."""
    known = set(CLIPS_V1.column_names)
    bad = [n for n in names if n not in known]
    if bad:
        raise KeyError(f"{bad} are not clips/v1 columns")
    return names


def tensor_columns(name: str) -> tuple[str, str, str]:
    """The three stored columns of a ``clips/v1`` tensor column."""
    return clip_columns(name, f"{name}_shape", f"{name}_dtype")


def schema_for(names: Iterable[str], registry: dict[str, Column] | None = None) -> pa.Schema:
    """Arrow schema of an in-flight batch (every column nullable: error rows leave gaps).

    ``registry``: where the columns are declared (default ``COLUMNS``, the clip build's; the
    pair build declares its own, ``stages.pair_columns.PAIR_COLUMNS``)."""
    registry = COLUMNS if registry is None else registry
    fields = []
    for n in names:
        if n not in registry:
            raise KeyError(f"column {n!r} is declared nowhere (clips/v1 or stages.base.INTERNAL)")
        fields.append(pa.field(n, registry[n].type, nullable=True))
    return pa.schema(fields)


class Stage:
    """Base class of the build stages (see the module docstring)."""

    name: ClassVar[str]
    inputs: ClassVar[tuple[str, ...]] = ()
    outputs: ClassVar[tuple[str, ...]] = ()
    drops: ClassVar[tuple[str, ...]] = ()
    engine_key: ClassVar[str] = ""  # which ``engine.<key>`` StageResources applies
    registry: ClassVar[dict[str, Column]] = COLUMNS  # where its columns are declared
    describe_loads_model: ClassVar[bool] = False  # describe() needs setup() (a model) first

    def __init__(self, cfg: BuildConfig) -> None:
        self.cfg = cfg

    @classmethod
    def enabled(cls, cfg: BuildConfig) -> bool:
        return True

    def uses_actor(self) -> bool:
        """True when the stage holds a model and runs in an actor pool."""
        return False

    def resources(self) -> StageResources:
        return getattr(self.cfg.engine, self.engine_key)

    def setup(self) -> None:
        """Load models / open clients; called once per worker before ``process``."""

    def process(self, batch: Batch) -> Batch | Iterator[Batch]:
        raise NotImplementedError

    def describe(self) -> dict:
        """Provenance of what the stage loaded (after ``setup``); {} when nothing."""
        return {}

    # ---- helpers -------------------------------------------------------------------------
    def passthrough(self, row: Row) -> Row:
        """An error row, minus the columns this stage consumes."""
        return {k: v for k, v in row.items() if k not in self.drops}

    def merge(self, row: Row, out: Row) -> Row:
        merged = {k: v for k, v in row.items() if k not in self.drops}
        merged.update(out)
        return merged

    def fail(self, row: Row, err: SampleError, weight: int | None = None) -> Row:
        """``row`` turned into an error row of this stage."""
        message = err.message
        if err.stage and err.stage != self.name:
            message = f"{err.stage}: {message}"
        out = self.passthrough(row)
        out.update(
            error_stage=self.name,
            error_kind=err.kind.value,
            error_message=message,
            error_time=datetime.now(UTC),
        )
        if weight is not None:
            out["row_weight"] = weight
        return out

    def map_rows(self, batch: Batch, fn: Callable[[Row], Row]) -> Batch:
        """Apply ``fn(row) -> new columns`` to each good row; ``SampleError`` -> error row."""
        out = []
        for row in batch:
            if is_error(row):
                out.append(self.passthrough(row))
                continue
            try:
                out.append(self.merge(row, fn(row)))
            except SampleError as e:
                out.append(self.fail(row, e))
        return out


def is_error(row: Row) -> bool:
    return row.get("error_kind") is not None


def split_errors(batch: Batch) -> tuple[list[int], list[int]]:
    """Indices of the good rows and of the error rows."""
    good = [i for i, r in enumerate(batch) if not is_error(r)]
    bad = [i for i, r in enumerate(batch) if is_error(r)]
    return good, bad


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
        undeclared = [c for c in (*st.outputs, *st.drops) if c not in st.registry]
        if undeclared:
            raise FatalError(f"stage {st.name!r} declares unknown columns {undeclared}")
        cols = [c for c in cols if c not in st.drops]
        cols += [c for c in st.outputs if c not in cols]
        after.append(tuple(cols))
    missing = [c for c in sink_inputs if c not in cols]
    if missing:
        raise FatalError(f"the writer needs {missing}, which no stage produces")
    return after


def check_batch(stage_name: str, batch: Batch, expected: Iterable[str]) -> None:
    """Strict mode: good rows carry exactly ``expected``; error rows a subset with errors set."""
    want = set(expected)
    for i, row in enumerate(batch):
        have = set(row)
        if is_error(row):
            extra = have - want
            if extra or not set(ERROR_COLUMNS) <= have:
                raise FatalError(
                    f"stage {stage_name!r} error row {i}: undeclared columns {sorted(extra)}"
                )
            continue
        if have != want:
            raise FatalError(
                f"stage {stage_name!r} row {i}: produced columns differ from the declared ones; "
                f"missing {sorted(want - have)}, undeclared {sorted(have - want)}"
            )


def to_table(
    batch: Batch, columns: Iterable[str], registry: dict[str, Column] | None = None
) -> pa.Table:
    """Rows -> Arrow with the declared types (never inferred); absent values become null."""
    schema = schema_for(columns, registry)
    return pa.Table.from_pylist(batch, schema=schema)
