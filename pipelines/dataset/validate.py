"""Check a built dataset before anyone trains on it or publishes it (``sama validate``).

Every shard is checked against the spec version it declares: readable (a truncated file is a
problem, not a crash), schema, non-null columns, tensor byte lengths vs shape and dtype, finite
float tensors, provenance present and consistent across shards (CONVENTIONS.md rule 3), ids
unique across shards, and every input of the build accounted for in clips, pairs or errors
(rule 5). Shards are streamed one row group at a time, so memory stays bounded.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict, dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from datasets_spec import RecordSpec, SchemaError
from datasets_spec.base import check_tensor_column
from datasets_spec.provenance import (
    COMPATIBILITY_KEYS,
    REQUIRED,
    check_provenance,
    compare,
    read_provenance,
)
from datasets_spec.tensors import STORAGE_DTYPES
from pipelines.dataset.layout import (
    INPUT_ID_COLUMNS,
    KINDS,
    DatasetDir,
    input_ids,
    num_inputs,
    open_dataset_dir,
)
from sama.shards import spec_of, url_to_fs

MAX_EXAMPLES = 5  # messages kept per (shard, check); the rest are counted
_FLOAT_DTYPES = ("bfloat16", "float16", "float32", "float64")
# provenance entries that may differ between shards without changing the latent space
_SOFT_KEYS = tuple(k for k in REQUIRED if k not in ("spec", "build_config"))


@dataclass(frozen=True)
class Problem:
    check: str  # readable | schema | nulls | tensor_bytes | finite | provenance | unique_ids | inputs | layout
    message: str
    shard: str | None = None
    level: str = "error"  # "error" fails validation, "warning" does not

    def __str__(self) -> str:
        where = f"{self.shard}: " if self.shard else ""
        return f"[{self.level}:{self.check}] {where}{self.message}"


@dataclass
class ShardInfo:
    path: str
    kind: str
    spec_id: str | None = None
    rows: int = 0
    provenance: dict | None = None
    readable: bool = True
    checked: bool = False  # every row was read and checked


@dataclass
class ValidationReport:
    root: str
    shards: list[ShardInfo] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    rows: dict[str, int] = field(default_factory=dict)
    num_inputs: int | None = None

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.level == "error"]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.level == "warning"]

    @property
    def ok(self) -> bool:
        return not self.errors

    def provenance(self) -> dict | None:
        """Provenance of the first readable shard (clips first), for reports and cards."""
        for s in self.shards:
            if s.provenance is not None and s.kind != "errors":
                return s.provenance
        return next((s.provenance for s in self.shards if s.provenance is not None), None)

    def to_dict(self) -> dict:
        return {
            "root": self.root,
            "ok": self.ok,
            "rows": self.rows,
            "num_inputs": self.num_inputs,
            "shards": [
                {k: v for k, v in asdict(s).items() if k != "provenance"} for s in self.shards
            ],
            "errors": [asdict(p) for p in self.errors],
            "warnings": [asdict(p) for p in self.warnings],
        }

    def format(self) -> str:
        """A readable summary: counts, then every problem, then the verdict."""
        counts = ", ".join(f"{self.rows.get(k, 0)} {k}" for k in KINDS)
        lines = [f"dataset {self.root}: {len(self.shards)} shards, {counts}"]
        if self.num_inputs is not None:
            lines[0] += f", {self.num_inputs} inputs"
        lines += [f"  {p}" for p in self.problems]
        verdict = "OK" if self.ok else f"INVALID: {len(self.errors)} error(s)"
        lines.append(f"{verdict}, {len(self.warnings)} warning(s)")
        return "\n".join(lines)


class _Collector:
    """Keeps the first ``MAX_EXAMPLES`` problems per (shard, check) and counts the rest."""

    def __init__(self) -> None:
        self.problems: list[Problem] = []
        self._seen: dict[tuple, int] = defaultdict(int)

    def add(self, check: str, message: str, shard: str | None = None, level: str = "error") -> None:
        key = (shard, check, level)
        self._seen[key] += 1
        if self._seen[key] <= MAX_EXAMPLES:
            self.problems.append(Problem(check, message, shard, level))

    def finish(self) -> list[Problem]:
        out = list(self.problems)
        for (shard, check, level), n in self._seen.items():
            if n > MAX_EXAMPLES:
                out.append(Problem(check, f"... and {n - MAX_EXAMPLES} more", shard, level))
        return out


def validate(root: str, fs=None, *, check_finite: bool = True) -> ValidationReport:
    """Check every shard under ``root`` (any fsspec URI); never raises on bad data."""
    ds = open_dataset_dir(root, fs)
    out = ValidationReport(root=root)
    col = _Collector()
    ids: dict[str, dict[str, str]] = {k: {} for k in KINDS}  # kind -> key -> first shard
    accounted: set[str] = set()
    for path in ds.leftovers:
        col.add("layout", "leftover temporary file of an interrupted write", path, "warning")
    if not any(ds.shards.values()):
        col.add("layout", f"no shards under {root}/{{{','.join(KINDS)}}}/*.parquet")
    for kind in KINDS:
        for path in ds.shards[kind]:
            info = ShardInfo(path=path, kind=kind)
            out.shards.append(info)
            _check_shard(ds, info, col, ids[kind], accounted, check_finite)
            out.rows[kind] = out.rows.get(kind, 0) + info.rows
    _check_provenance(out.shards, col)
    unchecked = [s for s in out.shards if not s.checked]
    if unchecked:  # their rows are unknown, so "missing" inputs would only echo the error above
        col.add(
            "inputs", f"not checked: {len(unchecked)} shard(s) could not be read", level="warning"
        )
        out.num_inputs = num_inputs(ds.summary)
    else:
        out.num_inputs = _check_inputs(ds, accounted, col)
    if ds.build_config_error:
        col.add("layout", ds.build_config_error, level="warning")
    out.problems = col.finish()
    return out


def _check_shard(
    ds: DatasetDir,
    info: ShardInfo,
    col: _Collector,
    seen_ids: dict[str, str],
    accounted: set[str],
    check_finite: bool,
) -> None:
    fs, path = url_to_fs(info.path, ds.fs)
    try:
        with fs.open(path, "rb") as f:
            pf = pq.ParquetFile(f)
            spec = _check_header(pf.schema_arrow, info, col)
            if spec is None:
                return
            for i in range(pf.num_row_groups):
                table = pf.read_row_group(i)
                _check_values(table, spec, info, col, check_finite)
                _check_ids(table, spec, info, col, seen_ids, accounted)
                info.rows += table.num_rows
            info.checked = True
    except (pa.ArrowException, OSError, EOFError) as e:
        info.readable = False
        col.add("readable", f"cannot read shard (truncated or not Parquet): {e}", info.path)


def _check_header(schema: pa.Schema, info: ShardInfo, col: _Collector) -> RecordSpec | None:
    """Spec version, schema and provenance from the footer; None if the rows can't be checked."""
    try:
        spec = spec_of(schema)
    except SchemaError as e:
        col.add("schema", f"unsupported spec version: {e}", info.path)
        return None
    info.spec_id = spec.id
    if spec.kind != info.kind:
        col.add("schema", f"declares spec {spec.id!r} but lies in {info.kind}/", info.path)
        return None
    try:
        spec.validate(schema)
    except SchemaError as e:
        col.add("schema", str(e), info.path)
        return None
    info.provenance = _read_prov(schema, spec, info, col)
    return spec


def _read_prov(
    schema: pa.Schema, spec: RecordSpec, info: ShardInfo, col: _Collector
) -> dict | None:
    try:
        prov = read_provenance(schema)
    except ValueError as e:
        col.add("provenance", f"provenance metadata is not JSON: {e}", info.path)
        return None
    if prov is None:
        col.add("provenance", "shard has no `sama.provenance` metadata", info.path)
        return None
    try:
        check_provenance(prov)
    except SchemaError as e:
        col.add("provenance", str(e), info.path)
    if prov.get("spec") != spec.id:
        col.add(
            "provenance",
            f"provenance spec {prov.get('spec')!r} != schema spec {spec.id!r}",
            info.path,
        )
    return prov


def _check_values(
    table: pa.Table, spec: RecordSpec, info: ShardInfo, col: _Collector, check_finite: bool
) -> None:
    base = info.rows  # row numbers are within the shard
    for c in spec.columns:
        if not c.nullable and table.column(c.name).null_count:
            col.add("nulls", f"column {c.name!r} has nulls but is not nullable", info.path)
    for t in spec.tensor_columns:
        try:
            check_tensor_column(table, t.name)
        except SchemaError as e:
            col.add("tensor_bytes", f"{e} (row group starting at row {base})", info.path)
            continue
        if check_finite:
            for row in _nonfinite_rows(table, t.name):
                col.add(
                    "finite", f"column {t.name!r} row {base + row}: NaN or Inf values", info.path
                )


def _nonfinite_rows(table: pa.Table, name: str) -> list[int]:
    """Rows whose float tensor holds NaN/Inf; bf16 is checked on its bit pattern (exponent)."""
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


def _check_ids(
    table: pa.Table,
    spec: RecordSpec,
    info: ShardInfo,
    col: _Collector,
    seen: dict[str, str],
    accounted: set[str],
) -> None:
    for key in table.column(spec.key).to_pylist():
        if key is None:
            continue
        if key in seen:
            where = "earlier in this shard" if seen[key] == info.path else f"also in {seen[key]}"
            col.add("unique_ids", f"{spec.key} {key!r} is duplicated ({where})", info.path)
        else:
            seen[key] = info.path
    accounted.update(x for x in table.column(INPUT_ID_COLUMNS[spec.kind]).to_pylist() if x)


def _check_provenance(shards: list[ShardInfo], col: _Collector) -> None:
    """Every shard must agree with the first one: fully within a kind, on the latent space across
    kinds (the ``spec`` entry differs by kind by design). Error shards are grouped by the build
    that wrote them (provenance ``build_kind``: a pair build's frame and resolution policies
    differ from a clip build's by design, pipelines/engine/root.py)."""
    with_prov = [s for s in shards if s.provenance is not None]
    if not with_prov:
        return
    ref = with_prov[0]
    ref_by_kind: dict[tuple[str, str], ShardInfo] = {}
    cross_keys = tuple(k for k in COMPATIBILITY_KEYS if k[0] != "spec")
    for s in with_prov:
        group = (s.kind, str(s.provenance.get("build_kind", "clips")))
        kref = ref_by_kind.setdefault(group, s)
        if kref is not s:
            diffs = compare(kref.provenance, s.provenance)
            soft = compare(kref.provenance, s.provenance, [(k, k) for k in _SOFT_KEYS])
        else:  # first shard of its kind: its kind must share the first kind's latent space
            kref, soft = ref, []
            diffs = compare(ref.provenance, s.provenance, cross_keys) if s is not ref else []
        for d in diffs:
            col.add("provenance", f"inconsistent with {kref.path}: {d}", s.path)
        for d in soft:
            col.add("provenance", f"differs from {kref.path}: {d}", s.path, "warning")


def _check_inputs(ds: DatasetDir, accounted: set[str], col: _Collector) -> int | None:
    if ds.summary is None:
        col.add(
            "inputs",
            f"{ds.summary_error}: cannot check that every input is accounted for",
            level="warning",
        )
        return None
    ids = ds.declared_inputs if ds.declared_inputs is not None else input_ids(ds.summary)
    declared = ds.summary.get("num_inputs")
    if ids is None:
        n = declared if isinstance(declared, int) else ds.summary.get("inputs")
        if not isinstance(n, int):
            col.add("inputs", "summary.json has neither `inputs` nor `num_inputs`")
            return None
        if len(accounted) != n:
            col.add(
                "inputs",
                f"summary.json declares {n} inputs but rows account for "
                f"{len(accounted)} distinct input ids",
            )
        return n
    if isinstance(declared, int) and declared != len(ids):
        col.add("inputs", f"summary.json num_inputs={declared} but lists {len(ids)} inputs")
    missing = [i for i in ids if i not in accounted]
    for i in missing:
        col.add(
            "inputs",
            f"input {i!r} is in no clips `video_id`, pairs `pair_id` or errors "
            "`item_id`: it was dropped silently",
        )
    unknown = sorted(accounted - set(ids))
    for i in unknown:
        col.add(
            "inputs", f"rows name input {i!r}, which summary.json does not list", level="warning"
        )
    return len(ids)
