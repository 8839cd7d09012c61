"""Which error rows are curation, not failure: the views count them apart.

Every input of a build is accounted for in the errors table (CONVENTIONS.md rule 5), and so is
every clip that curation removed: a clip filter's drop (stage ``filter``, kinds
``filtered_*``), the clean-clip guard's (stage ``clean_clip``, ``not_clean``), the VLM judge's
score filter on pairs (``filtered``), and the note on a damaged input whose good frames were
used (stage ``salvage``, ``salvaged``: its clips are in the data). These are decisions the
build made on purpose, so ``validate``, ``report`` and the card show them as curation, beside
(and never inside) the real failures: inputs that could not be read, decoded or encoded.
"""

from __future__ import annotations

from collections.abc import Mapping

from sama.errors import ErrorKind

# kind -> what it means, in the order the views list them
CURATION_KINDS: dict[str, str] = {
    ErrorKind.FILTERED_SHORT.value: "clip filter: shorter than filters.min_seconds",
    ErrorKind.FILTERED_DARK.value: "clip filter: black (mean_luma < filters.min_luma)",
    ErrorKind.FILTERED_BRIGHT.value: "clip filter: blown out (mean_luma > filters.max_luma)",
    ErrorKind.FILTERED_STATIC.value: "clip filter: static (motion_score < filters.min_motion)",
    ErrorKind.FILTERED_MOTION.value: "clip filter: too much motion (> filters.max_motion)",
    ErrorKind.NOT_CLEAN.value: "clean-clip guard: a boundary inside the clip",
    ErrorKind.FILTERED.value: "VLM judge: pair under the score thresholds",
    ErrorKind.SALVAGED.value: "salvaged input: damaged, its good frames were used (a note)",
}
NOTES = (ErrorKind.SALVAGED.value,)  # curation rows that drop nothing


def is_curation(kind: str | None) -> bool:
    return kind in CURATION_KINDS


def split_kinds(counts: Mapping[str, int]) -> tuple[dict[str, int], dict[str, int]]:
    """``(curation, failures)``: error-row counts by kind, curation in ``CURATION_KINDS``
    order, failures most frequent first."""
    curation = {k: int(counts[k]) for k in CURATION_KINDS if counts.get(k)}
    failures = {k: int(n) for k, n in counts.items() if k not in CURATION_KINDS and n}
    return curation, dict(sorted(failures.items(), key=lambda kv: (-kv[1], kv[0])))


def describe(curation: Mapping[str, int]) -> str:
    """``"2 filtered_dark, 1 salvaged"`` (``"none"`` when empty)."""
    return ", ".join(f"{n} {k}" for k, n in curation.items()) or "none"
