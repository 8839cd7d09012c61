"""One validation of a shard's footer, shared by ``sama validate`` and the trainer's loader.

Run before any column is read, on what the Parquet footer says: the spec version and schema,
the provenance JSON (a bounded object, never a number, a list or a 10k-deep nesting), and the
sizes of every row group (rows, uncompressed bytes, values per column chunk, no dictionary
encoding on tensor columns, whose pages could otherwise expand a few bytes into
gigabytes). A shard that passes can have its small columns read, whose tensor cells are then
checked by ``cells.check_cells`` before any tensor byte is touched.

Every function here reports problems as text naming the column (and row group or row); none
raises on bad data. The caller adds the shard's name and decides: ``sama validate`` prints a
line per problem and exits 1, the trainer refuses at start-up with the same lines.

What the footer cannot promise: its sizes are what the writer claims. pyarrow allocates a page
by the size in the page's own header, so a file crafted to lie in its footer is only caught
when a page is read (as a decoding error, not an allocation of what the footer hid); and a
dictionary-encoded *string* column may still expand a large dictionary value over many rows.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.parquet as pq

from datasets_spec import READABLE, RecordSpec, SchemaError, get_spec
from datasets_spec.base import PROVENANCE_KEY, SPEC_KEY
from datasets_spec.cells import MAX_TENSOR_BYTES
from datasets_spec.dedup import DEDUP_V1, check_dedup_provenance
from datasets_spec.provenance import check_provenance

# The Hub dataset viewer refuses to read row groups above 300,000,000 uncompressed bytes
# ("Rows from parquet row groups are too big to be read: ... (max=286.10 MiB)", its
# TooBigContentError; huggingface/dataset-viewer ROWS_INDEX_MAX_ARROW_DATA_IN_MEMORY), measured
# on the footer's row-group ``total_byte_size``, as here.
VIEWER_ROW_GROUP_BYTES = 300_000_000
MIB = 1 << 20


@dataclass(frozen=True)
class Limits:
    """Caps a shard must stay under to be read at all (before any allocation it could inflate)."""

    max_row_group_bytes: int = 1 << 30  # uncompressed, from the footer
    max_row_group_rows: int = 1 << 20
    max_list_values: int = 256  # values per row of a list column (prompts, anchor indices)
    max_tensor_bytes: int = MAX_TENSOR_BYTES  # one tensor cell
    max_provenance_bytes: int = 1 << 20
    max_provenance_depth: int = 32
    max_provenance_items: int = 100_000


@dataclass
class Footer:
    """What one shard's footer says, and the problems found in it (``(check, message)``)."""

    spec: RecordSpec | None = None
    provenance: dict | None = None
    problems: list[tuple[str, str]] = field(default_factory=list)
    warnings: list[tuple[str, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.spec is not None and not self.problems


def parse_provenance(raw: bytes | None, limits: Limits = Limits()) -> dict | None:
    """The provenance JSON object of a shard, or None if it has none; ``SchemaError`` when it
    is too big, not UTF-8 JSON, not an object, or nested too deep / too large."""
    if raw is None:
        return None
    if len(raw) > limits.max_provenance_bytes:
        raise SchemaError(
            f"provenance metadata is {len(raw):,} bytes, above the cap of "
            f"{limits.max_provenance_bytes:,}"
        )
    try:
        value = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise SchemaError("provenance metadata is not UTF-8 text") from None
    except RecursionError:
        raise SchemaError("provenance metadata is nested too deep to parse") from None
    except ValueError as e:
        raise SchemaError(f"provenance metadata is not JSON: {e}") from None
    if not isinstance(value, dict):
        raise SchemaError(
            f"provenance metadata must be a JSON object, got a JSON {_json_type(value)}"
        )
    _check_json_size(value, limits)
    return value


def _json_type(value) -> str:
    names = {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}
    return names.get(type(value), "number")


def _check_json_size(value: dict, limits: Limits) -> None:
    stack, items = [(value, 1)], 0
    while stack:
        node, depth = stack.pop()
        if depth > limits.max_provenance_depth:
            raise SchemaError(
                f"provenance metadata is nested deeper than {limits.max_provenance_depth} levels"
            )
        children = node.values() if isinstance(node, dict) else node
        for child in children:
            items += 1
            if isinstance(child, dict | list):
                stack.append((child, depth + 1))
        if items > limits.max_provenance_items:
            raise SchemaError(
                f"provenance metadata holds more than {limits.max_provenance_items:,} values"
            )


def declared_spec(schema: pa.Schema, kind: str | None = None) -> RecordSpec:
    """The spec a shard declares (``sama.spec``), checked against ``kind`` if given."""
    raw = (schema.metadata or {}).get(SPEC_KEY)
    if raw is None:
        raise SchemaError("shard has no `sama.spec` metadata; it was not written by sama")
    try:
        spec = get_spec(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise SchemaError("`sama.spec` metadata is not UTF-8 text") from None
    if kind is not None and spec not in READABLE.get(kind, ()):
        readable = [s.id for s in READABLE.get(kind, ())]
        raise SchemaError(f"declares spec {spec.id!r}, but {kind} readers accept {readable}")
    return spec


def read_footer(pf: pq.ParquetFile, kind: str | None = None, limits: Limits = Limits()) -> Footer:
    """Spec, schema, provenance and row-group sizes of an opened shard; reads no column."""
    out = Footer()
    schema = pf.schema_arrow
    try:
        spec = declared_spec(schema, kind)
        spec.validate(schema)
    except SchemaError as e:
        out.problems.append(("schema", str(e)))
        return out
    out.spec = spec
    try:
        out.provenance = parse_provenance((schema.metadata or {}).get(PROVENANCE_KEY), limits)
    except SchemaError as e:
        out.problems.append(("provenance", str(e)))
    if out.provenance is None and not out.problems:
        out.problems.append(("provenance", "shard has no `sama.provenance` metadata"))
    elif out.provenance is not None:
        try:
            check_provenance(out.provenance)
        except SchemaError as e:
            out.problems.append(("provenance", str(e)))
        if out.provenance.get("spec") != spec.id:
            out.problems.append(
                (
                    "provenance",
                    f"provenance spec {out.provenance.get('spec')!r} != schema spec {spec.id!r}",
                )
            )
    out.problems += [("row_group", m) for m in check_row_groups(pf.metadata, spec, limits)]
    out.warnings += [("viewer", m) for m in viewer_warnings(pf.metadata)]
    return out


def _leaf_rules(spec: RecordSpec, limits: Limits) -> dict[str, tuple[int, bool]]:
    """Top-level column -> (values per row at most, dictionary encoding allowed)."""
    rules: dict[str, tuple[int, bool]] = {}
    tensors = {t.name: t for t in spec.tensor_columns}
    for c in spec.columns:
        if c.name in tensors:
            rules[c.name] = (1, False)
        elif c.name.endswith("_shape") and c.name[: -len("_shape")] in tensors:
            rules[c.name] = (tensors[c.name[: -len("_shape")]].ndim, True)
        elif pa.types.is_list(c.type) or pa.types.is_large_list(c.type):
            rules[c.name] = (limits.max_list_values, True)
        else:
            rules[c.name] = (1, True)
    return rules


def check_row_groups(md: pq.FileMetaData, spec: RecordSpec, limits: Limits = Limits()) -> list[str]:
    """Row-group sizes from the footer: rows, uncompressed bytes, values per column chunk,
    and no dictionary pages on tensor columns."""
    rules, out = _leaf_rules(spec, limits), []
    for i in range(md.num_row_groups):
        rg = md.row_group(i)
        rows = rg.num_rows
        if not 0 <= rows <= limits.max_row_group_rows:
            out.append(
                f"row group {i}: {rows:,} rows, above the cap of "
                f"{limits.max_row_group_rows:,}: refusing to read it"
            )
            continue
        if rg.total_byte_size > limits.max_row_group_bytes:
            out.append(
                f"row group {i}: {rg.total_byte_size / MIB:,.1f} MiB uncompressed "
                f"(footer), above the cap of {limits.max_row_group_bytes / MIB:,.0f} MiB: "
                "refusing to read it (a decompression bomb, or row groups sized for "
                "another reader)"
            )
            continue
        for j in range(rg.num_columns):
            c = rg.column(j)
            name = c.path_in_schema.split(".")[0]
            per_row, dict_ok = rules.get(name, (1, True))
            if c.num_values > rows * per_row:
                out.append(
                    f"row group {i}, column {name!r}: {c.num_values:,} values for "
                    f"{rows:,} rows (at most {per_row} per row)"
                )
            if not dict_ok and any("DICTIONARY" in e for e in c.encodings):
                out.append(
                    f"row group {i}, column {name!r}: a tensor column must not be "
                    "dictionary-encoded (a few repeated dictionary entries can expand to any "
                    "size); rewrite it with sama.shards.write_shard, or pyarrow use_dictionary "
                    "limited to the string columns"
                )
    return out


def viewer_warnings(md: pq.FileMetaData) -> list[str]:
    """Row groups the Hub dataset viewer will not show (``VIEWER_ROW_GROUP_BYTES``)."""
    out = []
    for i in range(md.num_row_groups):
        size = md.row_group(i).total_byte_size
        if size > VIEWER_ROW_GROUP_BYTES:
            out.append(
                f"row group {i}: {size / MIB:,.1f} MiB uncompressed, above the Hub "
                f"viewer's {VIEWER_ROW_GROUP_BYTES / MIB:.2f} MiB: the viewer will not "
                "show these rows (write smaller row groups: output.row_group_mb)"
            )
    return out


def tensor_bytes_problem(md: pq.FileMetaData, row_group: int, name: str, needed: int) -> str | None:
    """A tensor column's stored bytes can only be >= what its shapes need (every encoding of
    variable-length bytes stores each value whole): fewer means short cells, found from the
    footer without reading them."""
    rg = md.row_group(row_group)
    for j in range(rg.num_columns):
        c = rg.column(j)
        if c.path_in_schema == name and needed > c.total_uncompressed_size:
            return (
                f"row group {row_group}, column {name!r}: the shapes need {needed:,} bytes "
                f"but the column holds {c.total_uncompressed_size:,}: its cells are shorter "
                "than their shapes"
            )
    return None


def check_dedup_footer(pf: pq.ParquetFile, limits: Limits = Limits()) -> tuple[dict, list[str]]:
    """What a ``dedup/v1`` table file's footer says before any row is read: its provenance,
    once the declared spec, the schema and the bounded provenance (how the marks were made)
    pass (else ``SchemaError``), and the row-group problems (sizes beyond ``limits``), which
    each reader reports its own way. ``sama validate`` and the trainer's loader share it."""
    schema = pf.schema_arrow
    spec = declared_spec(schema)
    if spec is not DEDUP_V1:
        raise SchemaError(f"declares {spec.id!r}, not {DEDUP_V1.id!r} (dedup/ holds dedup/v1 "
                          "tables only)")  # fmt: skip
    DEDUP_V1.validate(schema)
    prov = parse_provenance((schema.metadata or {}).get(PROVENANCE_KEY), limits)
    if prov is None:
        raise SchemaError("no `sama.provenance` metadata: not written by `sama dedup`")
    check_dedup_provenance(prov)
    return prov, check_row_groups(pf.metadata, DEDUP_V1, limits)
