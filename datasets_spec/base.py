"""A record kind declared once: columns -> Arrow schema, HF features, validation, card table.

Each column carries its name, Arrow type, unit, producing stage and description. A tensor
column expands into three stored columns (``x``, ``x_shape``, ``x_dtype``; see ``tensors.py``)
and declares an upper bound per axis, which every reader enforces before allocating anything
(``cells.py``). No heavy imports: ``datasets`` is imported only by ``RecordSpec.features()``.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc

from datasets_spec.cells import check_cells
from datasets_spec.tensors import decode_array

SPEC_KEY = b"sama.spec"
PROVENANCE_KEY = b"sama.provenance"


class SchemaError(ValueError):
    """A table or schema does not match its declared spec; the message names the column."""


@dataclass(frozen=True)
class Column:
    name: str
    type: pa.DataType
    description: str
    stage: str
    unit: str = ""
    nullable: bool = False
    hf_feature: str | None = None  # "image": shown as an HF ``Image`` (struct {bytes, path})


@dataclass(frozen=True)
class TensorColumn:
    """A tensor stored as bytes + shape + dtype. ``layout`` names the axes, e.g. ``C,T,H,W``;
    ``max_shape`` bounds each axis (a shard beyond it is refused before it is read)."""

    name: str
    layout: str
    description: str
    stage: str
    max_shape: tuple[int, ...]
    default_dtype: str = "bfloat16"
    nullable: bool = False

    def __post_init__(self) -> None:
        if len(self.max_shape) != len(self.layout.split(",")):
            raise ValueError(f"{self.name}: max_shape {self.max_shape} does not match {self.layout}")

    @property
    def ndim(self) -> int:
        return len(self.max_shape)

    def columns(self) -> list[Column]:
        n = self.name
        return [
            Column(n, pa.large_binary(), f"{self.description} (raw little-endian bytes, C order)",
                   self.stage, f"tensor[{self.layout}]", self.nullable),
            Column(f"{n}_shape", pa.list_(pa.int32()), f"shape of `{n}` ({self.layout})",
                   self.stage, "", self.nullable),
            Column(f"{n}_dtype", pa.string(), f"dtype of `{n}` (default {self.default_dtype})",
                   self.stage, "", self.nullable),
        ]


@dataclass(frozen=True)
class RecordSpec:
    kind: str  # "clips", "pairs", "errors"
    version: str  # "v1"
    description: str
    fields: tuple[Column | TensorColumn, ...]
    key: str  # the unique id column
    extra_metadata: dict = field(default_factory=dict)

    @property
    def id(self) -> str:
        return f"{self.kind}/{self.version}"

    @functools.cached_property  # readers call it per shard; specs never change
    def columns(self) -> list[Column]:
        out: list[Column] = []
        for f in self.fields:
            out.extend(f.columns() if isinstance(f, TensorColumn) else [f])
        return out

    @functools.cached_property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def tensor_columns(self) -> list[TensorColumn]:
        return [f for f in self.fields if isinstance(f, TensorColumn)]

    @property
    def schema(self) -> pa.Schema:
        fields = [pa.field(c.name, c.type, nullable=c.nullable) for c in self.columns]
        return pa.schema(fields, metadata={SPEC_KEY: self.id.encode()})

    def column(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(f"{self.id} has no column {name!r}")

    def features(self):
        """The matching ``datasets.Features`` (imports ``datasets``); image columns are
        ``datasets.Image`` (their Arrow storage is the Image struct ``{bytes, path}``)."""
        from datasets import Features, Image

        features = Features.from_arrow_schema(self.schema)
        for c in self.columns:
            if c.hf_feature == "image":
                features[c.name] = Image()
        return features

    def empty_table(self) -> pa.Table:
        return self.schema.empty_table()

    def from_rows(self, rows: Iterable[dict]) -> pa.Table:
        """Build a table with the declared schema (never inferred); missing keys -> error."""
        rows = list(rows)
        names = self.column_names
        for i, r in enumerate(rows):
            missing = [n for n in names if n not in r and not self.column(n).nullable]
            extra = [k for k in r if k not in names]
            if missing or extra:
                raise SchemaError(
                    f"{self.id} row {i}: missing columns {missing}, unknown columns {extra}"
                )
        arrays = {n: [r.get(n) for r in rows] for n in names}
        return pa.Table.from_pydict(arrays, schema=self.schema)

    # ---- validation -------------------------------------------------------------------
    def validate(self, obj: pa.Table | pa.Schema, *, check_values: bool = True) -> None:
        """Raise ``SchemaError`` naming the offending column if ``obj`` does not match."""
        schema = obj if isinstance(obj, pa.Schema) else obj.schema
        self._validate_schema(schema)
        if isinstance(obj, pa.Table) and check_values:
            self._validate_values(obj)

    def _validate_schema(self, schema: pa.Schema) -> None:
        meta = schema.metadata or {}
        spec_id = meta.get(SPEC_KEY, b"").decode()
        if spec_id and spec_id != self.id:
            raise SchemaError(f"table declares spec {spec_id!r}, expected {self.id!r}")
        have = {f.name: f for f in schema}
        for c in self.columns:
            if c.name not in have:
                raise SchemaError(f"{self.id}: missing column {c.name!r} ({c.description})")
            if not have[c.name].type.equals(c.type):
                raise SchemaError(
                    f"{self.id}: column {c.name!r} has type {have[c.name].type}, expected {c.type}"
                )
        unknown = [n for n in have if n not in set(self.column_names)]
        if unknown:
            raise SchemaError(f"{self.id}: unknown column(s) {unknown}")

    def _validate_values(self, table: pa.Table) -> None:
        for c in self.columns:
            if not c.nullable and table.column(c.name).null_count:
                raise SchemaError(f"{self.id}: column {c.name!r} has nulls but is not nullable")
        keys = table.column(self.key)
        if len(keys) and pc.count_distinct(keys).as_py() != len(keys):
            raise SchemaError(f"{self.id}: column {self.key!r} has duplicate ids")
        for t in self.tensor_columns:
            check_tensor_column(table, t)

    # ---- documentation ----------------------------------------------------------------
    def card_table(self) -> str:
        """Markdown column table (name, type, unit, stage, description) for a dataset card."""
        lines = ["| column | type | unit | stage | description |", "|---|---|---|---|---|"]
        for c in self.columns:
            null = " (nullable)" if c.nullable else ""
            lines.append(
                f"| `{c.name}` | `{c.type}`{null} | {c.unit} | {c.stage} | {c.description} |"
            )
        return "\n".join(lines)

    def golden(self) -> dict:
        """A JSON-able description of the schema, committed under tests/ to show changes."""
        return {
            "spec": self.id,
            "key": self.key,
            "columns": [
                {"name": c.name, "type": str(c.type), "nullable": c.nullable, "unit": c.unit}
                for c in self.columns
            ],
        }

    def golden_json(self) -> str:
        return json.dumps(self.golden(), indent=2, sort_keys=True) + "\n"


def check_tensor_column(table: pa.Table, column: TensorColumn) -> None:
    """Shape, dtype and byte length of every tensor cell (``cells.check_cells``); raises
    ``SchemaError`` with the first problem."""
    report = check_cells(table, column)
    if report.problems:
        raise SchemaError(report.problems[0][1])


def read_tensor(row: dict, name: str, *, widen_bf16: bool = True):
    """Decode tensor column ``name`` of a row dict (as from ``to_pylist``) to numpy, or None."""
    if row.get(name) is None:
        return None
    return decode_array(row[name], row[f"{name}_shape"], row[f"{name}_dtype"], widen_bf16=widen_bf16)
