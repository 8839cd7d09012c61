"""One dataset root, several builds: what each build kind owns under ROOT, and the summary.

SAMA's stage 0 trains on image-edit pairs plus plain clips, stage 1 on image and video pairs
(SAMA.md §4), and the trainer reads both from one root. So ``sama build`` may run once per kind
into the same root, and neither run may clobber the other. A build of kind ``K`` owns
(docs/dataset_layout.md):

- its shard folder ``K/`` and its error shards in the shared ``errors/`` folder, named
  ``part-K-*.parquet`` (the rows say it too: ``errors/v1`` ``record_kind``);
- its state ``_state/K/``: ``fingerprint.json``, the declared inputs table ``inputs/``, the
  writers' ``sidecars/`` and their compacted ``index/`` (``engine/resume.py``);
- its resolved, redacted config ``build_config_K.yaml`` (a clip build also writes
  ``build_config.yaml``, the root's main config for the report and the card).

Shared: ``_state/lease.json`` (one build at a time per root, either kind: ``engine/lease.py``)
and ``summary.json``, which each build rewrites with its own entry under ``by_kind`` and keeps
the others'; the top-level counts are totals over the kinds. Nothing here names a record kind:
kinds are just names.
"""

from __future__ import annotations

import posixpath

STATE_DIR = "_state"
SIDECAR_DIR = "sidecars"
INDEX_DIR = "index"
INPUTS_DIR = "inputs"
FINGERPRINT = "fingerprint.json"
LEASE_FILE = posixpath.join(STATE_DIR, "lease.json")
SUMMARY_FILE = "summary.json"
MAIN_CONFIG = "build_config.yaml"
# totals over the kinds at the top of summary.json
SUMMED = ("num_inputs", "errors", "inputs_failed", "num_inputs_unaccounted", "bytes_written")


def state_dir(kind: str) -> str:
    """Resume state of ``kind``, relative to ROOT."""
    return posixpath.join(STATE_DIR, kind)


def shard_prefix(kind: str) -> str:
    """Name prefix of every shard a ``kind`` build writes (data and errors)."""
    return f"part-{kind}-"


def owns_error_shard(kind: str, name: str) -> bool:
    """Whether the error shard called ``name`` (a basename) was written by a ``kind`` build."""
    return name.startswith(shard_prefix(kind))


def config_file(kind: str) -> str:
    """Where a ``kind`` build writes its resolved config, relative to ROOT."""
    return f"build_config_{kind}.yaml"


def merge_summary(old: dict | None, new: dict, kind: str) -> dict:
    """``summary.json`` of a root after a ``kind`` build whose own summary is ``new``."""
    by_kind = dict((old or {}).get("by_kind") or {})
    by_kind[kind] = new
    merged: dict = {
        "sama_version": new.get("sama_version"),
        "output": new.get("output"),
        "kinds": sorted(by_kind),
    }
    for key in SUMMED:
        merged[key] = sum(int(s.get(key) or 0) for s in by_kind.values())
    for k in sorted(by_kind):  # each kind's row count (clips, pairs) at the top too
        merged[k] = by_kind[k].get(k, 0)
    merged["by_kind"] = dict(sorted(by_kind.items()))
    return merged


def without_kind(summary: dict | None, kind: str) -> dict | None:
    """``summary.json`` once the ``kind`` build is removed (``if_exists=overwrite``); None when
    nothing else is left."""
    by_kind = {k: v for k, v in ((summary or {}).get("by_kind") or {}).items() if k != kind}
    if not by_kind:
        return None
    first, *rest = sorted(by_kind)
    merged = merge_summary(None, by_kind[first], first)
    for k in rest:
        merged = merge_summary(merged, by_kind[k], k)
    return merged
