"""The ``dedup/v1`` table of a root, read and checked for ``validate``, ``report`` and the card.

``sama dedup`` (``pipelines/dataset/dedup.py``) writes it beside the shards, never into them:
``ROOT/dedup/part-dedup-*.parquet`` in a build's layout, ``ROOT/data/dedup/`` once published
(``sama.shards.LAYOUTS``). Only the marked clips have rows; a clip without one is kept. Every
file of the table carries the same provenance (threshold, method, SigLIP, the clips it was
computed over: ``datasets_spec.dedup``).

Reading is hostile-safe in the same order as the shards' (``datasets_spec/checks.py``): the
declared spec and schema, a bounded provenance, the row-group sizes, and only then the three
small columns. Nothing here raises on bad data: problems are ``(check, message, path)``.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.parquet as pq

from datasets_spec import DEDUP_V1, SchemaError
from datasets_spec.checks import Limits, check_dedup_footer
from sama.shards import list_shards, url_to_fs

DEDUP_DIR = "dedup"  # ROOT/dedup/ (published: ROOT/data/dedup/)
SIMILARITY_SLACK = 1e-4  # float32 storage of a cosine computed in float32


@dataclass
class DedupTable:
    """The rows and provenance of a root's dedup table, and what is wrong with it."""

    paths: list[str]
    provenance: dict | None = None
    clip_id: list[str] = field(default_factory=list)
    duplicate_of: list[str] = field(default_factory=list)
    similarity: list[float] = field(default_factory=list)
    problems: list[tuple[str, str, str | None]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def threshold(self) -> float | None:
        return (self.provenance or {}).get("threshold")

    @property
    def method(self) -> str | None:
        return (self.provenance or {}).get("method")

    @property
    def groups(self) -> int:
        """Kept clips that have at least one duplicate."""
        return len(set(self.duplicate_of))

    def pairs(self) -> list[tuple[str, str, float]]:
        return list(zip(self.clip_id, self.duplicate_of, self.similarity, strict=True))

    def marked(self) -> set[str]:
        return set(self.clip_id)

    def summary(self) -> dict:
        """What the views print: counts, threshold, method, the clips it was computed over."""
        clips = (self.provenance or {}).get("clips") or {}
        return {
            "spec": DEDUP_V1.id,
            "duplicates": len(self.clip_id),
            "groups": self.groups,
            "threshold": self.threshold,
            "method": self.method,
            "keep_rule": (self.provenance or {}).get("keep_rule"),
            "clips_compared": clips.get("rows") if isinstance(clips, dict) else None,
            "files": len(self.paths),
        }


def dedup_paths(root: str, fs=None) -> list[str]:
    """The table's files under ``root`` (build or published layout); ``[]`` when there is none."""
    return list_shards(root, DEDUP_DIR, fs)


def read_dedup_table(root: str, fs=None, limits: Limits = Limits()) -> DedupTable | None:
    """The dedup table of ``root``, or None when the root has none."""
    paths = dedup_paths(root, fs)
    if not paths:
        return None
    table = DedupTable(paths)
    provs: list[tuple[str, dict]] = []
    for path in paths:
        try:
            prov, rows = _read_file(path, fs, limits, table.problems)
        except (pa.ArrowException, OSError, EOFError) as e:
            table.problems.append(
                ("readable", f"cannot read (truncated or not Parquet): {e}", path)
            )
            continue
        if prov is None or rows is None:
            continue
        provs.append((path, prov))
        table.clip_id += rows.column("clip_id").to_pylist()
        table.duplicate_of += rows.column("duplicate_of").to_pylist()
        table.similarity += rows.column("similarity").to_pylist()
    if provs:
        table.provenance = provs[0][1]
    for path, prov in provs[1:]:
        if prov != provs[0][1]:
            table.problems.append(
                (
                    "dedup",
                    f"provenance differs from {provs[0][0]}'s: one table, one dedup run "
                    "(re-run `sama dedup ROOT --overwrite`)",
                    path,
                )  # fmt: skip
            )
    return table


def _read_file(
    path: str, fs, limits: Limits, problems: list
) -> tuple[dict | None, pa.Table | None]:
    fs, p = url_to_fs(path, fs)
    with fs.open(p, "rb") as f:
        pf = pq.ParquetFile(f)
        try:
            prov, sizes = check_dedup_footer(pf, limits)
        except SchemaError as e:
            problems.append(("dedup", str(e), path))
            return None, None
        if sizes:
            problems += [("row_group", m, path) for m in sizes]
            return prov, None
        rows = pf.read(columns=DEDUP_V1.column_names)
    for name in DEDUP_V1.column_names:
        if rows.column(name).null_count:
            problems.append(("nulls", f"column {name!r} has nulls but is not nullable", path))
            return prov, None
    return prov, rows


def check_rows(table: DedupTable, clip_ids: set[str] | None) -> list[tuple[str, str]]:
    """``(check, message)`` for rows that break the table's rules: unique ``clip_id``, a kept
    clip never itself marked, similarity in [threshold, 1], and (``clip_ids``: every clip of
    the root, None when unknown) both ids naming a clip of the root."""
    out: list[tuple[str, str]] = []
    counts = Counter(table.clip_id)
    for cid in sorted(c for c, n in counts.items() if n > 1):
        out.append(("unique_ids", f"clip {cid!r} is marked {counts[cid]} times"))
    marked = table.marked()
    threshold = float(table.threshold or 0.0)
    for cid, kept, sim in table.pairs():
        if cid == kept:
            out.append(("dedup", f"clip {cid!r} is marked as a duplicate of itself"))
        elif kept in marked:
            out.append(
                ("dedup", f"kept clip {kept!r} (of {cid!r}) is itself marked as a duplicate")
            )
        if not (math.isfinite(sim) and threshold - SIMILARITY_SLACK <= sim <= 1 + SIMILARITY_SLACK):
            out.append(("dedup", f"clip {cid!r}: similarity {sim} is outside [threshold "
                        f"{threshold:g}, 1]"))  # fmt: skip
        if clip_ids is not None:
            for role, c in (("clip_id", cid), ("duplicate_of", kept)):
                if c not in clip_ids:
                    out.append(("dedup", f"{role} {c!r} names no clip of the root (a stale "
                                "table? re-run `sama dedup ROOT --overwrite`)"))  # fmt: skip
    return out


def stale_warning(table: DedupTable, clip_rows: int) -> str | None:
    """A message when the root's clips are not the ones the table was computed over."""
    clips = (table.provenance or {}).get("clips")
    if not isinstance(clips, dict) or clips.get("rows") == clip_rows:
        return None
    return (
        f"the dedup table was computed over {clips.get('rows')} clips, the root now holds "
        f"{clip_rows}: clips built since are not compared (re-run `sama dedup ROOT --overwrite`)"
    )


def siglip_warning(table: DedupTable, clips_siglip: dict | None) -> str | None:
    """A message when the clips' SigLIP (their provenance) is not the one the table compared."""
    ours = (table.provenance or {}).get("siglip")
    if not isinstance(ours, dict) or not isinstance(clips_siglip, dict):
        return None
    key = ("id", "config_hash")
    if [ours.get(k) for k in key] == [clips_siglip.get(k) for k in key]:
        return None
    return (
        f"the dedup table compared anchor tokens of another SigLIP ({ours.get('id')!r}) than "
        f"the clips' ({clips_siglip.get('id')!r}): re-run `sama dedup ROOT --overwrite`"
    )
