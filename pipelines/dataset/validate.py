"""Check a built dataset before anyone trains on it or publishes it (``sama validate``).

Every shard is checked against the spec version it declares (``pipelines/dataset/
shard_check.py``): readable (a truncated file is a problem, not a crash), the footer (schema,
provenance a bounded JSON object, row-group sizes under the caps, with the same check the
trainer runs: ``datasets_spec.checks``), tensor shapes, dtypes and byte lengths
(``datasets_spec.cells``), non-null columns, finite float tensors (full check); across shards:
provenance consistent (CONVENTIONS.md rule 3), ids unique, one spec version per kind, and every
input of the build accounted for in clips, pairs or errors (rule 5). Shards are streamed one row
group at a time, so memory stays bounded; nothing here raises on bad data.

A root's ``dedup/v1`` table (``sama dedup``) is checked too (``pipelines/dataset/dedup_table.py``):
spec, provenance, and that every ``clip_id`` / ``duplicate_of`` names a clip of the root and no
kept clip is itself marked. Error rows are counted by kind, curation (filters, the clean-clip
guard, salvage notes: ``pipelines/dataset/curation.py``) apart from real failures.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict, dataclass, field

import pyarrow as pa
import pyarrow.parquet as pq

from datasets_spec import RecordSpec
from datasets_spec.checks import Limits
from datasets_spec.provenance import COMPATIBILITY_KEYS, REQUIRED, compare
from pipelines.dataset import curation
from pipelines.dataset.dedup_table import (
    check_rows,
    read_dedup_table,
    siglip_warning,
    stale_warning,
)
from pipelines.dataset.layout import (
    INPUT_ID_COLUMNS,
    KINDS,
    DatasetDir,
    input_ids,
    num_inputs,
    open_dataset_dir,
)
from pipelines.dataset.shard_check import check_shard
from sama.shards import url_to_fs

MAX_EXAMPLES = 5  # messages kept per (shard, check); the rest are counted
# provenance entries that may differ between shards without changing the latent space
_SOFT_KEYS = tuple(k for k in REQUIRED if k not in ("spec", "build_config"))


@dataclass(frozen=True)
class Problem:
    # readable | schema | row_group | nulls | tensor_shape | tensor_bytes | finite | provenance |
    # unique_ids | inputs | layout | dedup | viewer (warning) | versions (warning)
    check: str
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
    error_kinds: dict[str, int] = field(default_factory=dict)  # error rows by `kind`
    dedup: dict | None = None  # the dedup table's summary (DedupTable.summary), if any

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
            "error_rows": dict(zip(("curation", "failures"), self.split_errors(), strict=True)),
            "dedup": self.dedup,
        }

    def split_errors(self) -> tuple[dict[str, int], dict[str, int]]:
        """Error rows by kind: ``(curation, failures)`` (``pipelines/dataset/curation.py``)."""
        return curation.split_kinds(self.error_kinds)

    def format(self) -> str:
        """A readable summary: counts, then every problem, then the verdict."""
        counts = ", ".join(f"{self.rows.get(k, 0)} {k}" for k in KINDS)
        lines = [f"dataset {self.root}: {len(self.shards)} shards, {counts}"]
        if self.num_inputs is not None:
            lines[0] += f", {self.num_inputs} inputs"
        if self.dedup is not None:
            lines[0] += f", {self.dedup['duplicates']} marked near-duplicates"
        cur, fail = self.split_errors()
        if self.error_kinds:
            lines.append(f"  error rows: curation {curation.describe(cur)}; failures "
                         f"{curation.describe(fail)}")  # fmt: skip
        if self.dedup is not None:
            d = self.dedup
            lines.append(f"  dedup: {d['duplicates']} clips marked as near-duplicates of "
                         f"{d['groups']} kept clips (dedup/v1, threshold {d['threshold']:g})")  # fmt: skip
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


def validate(
    root: str,
    fs=None,
    *,
    full: bool = True,
    check_finite: bool = True,
    limits: Limits = Limits(),
) -> ValidationReport:
    """Check every shard under ``root`` (any fsspec URI); never raises on bad data.

    ``full=False`` reads footers and the small columns only (shapes, dtypes, ids): tensor
    bytes are checked against the footer's sizes instead of cell by cell, and not for NaN."""
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
            mode = (full, check_finite, limits)
            _check_shard(ds, info, col, ids[kind], accounted, mode, out.error_kinds)
            out.rows[kind] = out.rows.get(kind, 0) + info.rows
    _check_provenance(out.shards, col)
    _check_versions(out.shards, col)
    unchecked = [s for s in out.shards if not s.checked]
    if unchecked:  # their rows are unknown, so "missing" inputs would only echo the error above
        col.add(
            "inputs",
            f"not checked: {len(unchecked)} shard(s) were not read through (see the errors)",
            level="warning",
        )
        out.num_inputs = num_inputs(ds.summary)
    else:
        out.num_inputs = _check_inputs(ds, accounted, col)
    clip_ids = set(ids["clips"]) if not unchecked else None
    out.dedup = _check_dedup(ds, out, col, clip_ids, limits)
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
    mode: tuple[bool, bool, Limits],
    kinds: dict[str, int],
) -> None:
    full, check_finite, limits = mode
    fs, path = url_to_fs(info.path, ds.fs)

    def on_rows(spec: RecordSpec, table: pa.Table) -> None:
        _check_ids(table, spec, info, col, seen_ids, accounted)
        if spec.kind == "errors":
            for kind in table.column("kind").to_pylist():
                kinds[kind] = kinds.get(kind, 0) + 1

    try:
        with fs.open(path, "rb") as f:
            pf = pq.ParquetFile(f)
            check_shard(
                pf,
                info,
                col.add,
                on_rows,
                full=full,
                check_finite=check_finite,
                limits=limits,
                input_column=INPUT_ID_COLUMNS,
            )
    except (pa.ArrowException, OSError, EOFError) as e:
        info.readable = False
        col.add("readable", f"cannot read shard (truncated or not Parquet): {e}", info.path)


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


def _check_versions(shards: list[ShardInfo], col: _Collector) -> None:
    """One spec version per kind: the trainer reads a mix, but the Hub viewer and ``datasets``
    take one schema per config (``sama publish`` refuses a mix)."""
    for kind in KINDS:
        versions = sorted({s.spec_id for s in shards if s.kind == kind and s.spec_id})
        if len(versions) > 1:
            col.add(
                "versions",
                f"{kind}/ mixes spec versions {versions}: the trainer reads "
                "them all, but one Hub config needs one schema (rebuild into one version "
                "before publishing)",
                level="warning",
            )


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
        if kref is not s:  # spec versions of one kind may differ (see _check_versions)
            diffs = compare(kref.provenance, s.provenance, cross_keys)
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


def _check_dedup(
    ds: DatasetDir, out: ValidationReport, col: _Collector, clip_ids: set[str] | None, limits
) -> dict | None:
    """The root's dedup table (if any): readable, declared, its rows consistent with the
    clips (``clip_ids``: None when some clip shard could not be read through)."""
    table = read_dedup_table(ds.root, ds.fs, limits)
    if table is None:
        return None
    for check, message, path in table.problems:
        col.add(check, message, path)
    if table.provenance is None:
        return None
    where = table.paths[0] if len(table.paths) == 1 else "dedup/"
    for check, message in check_rows(table, clip_ids):
        col.add(check, message, where)
    if clip_ids is not None:
        stale = stale_warning(table, len(clip_ids))
        if stale:
            col.add("dedup", stale, where, level="warning")
    other = siglip_warning(table, (out.provenance() or {}).get("siglip"))
    if other:
        col.add("dedup", other, where, level="warning")
    return table.summary()
