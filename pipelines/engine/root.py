"""One dataset root, two builds: what a clip build and a pair build each own under ROOT.

SAMA's stage 0 trains on image-edit pairs plus plain clips, stage 1 on image and video pairs
(SAMA.md §4), and the trainer reads both from one root (``data.root``: ``ROOT/clips``,
``ROOT/pairs``). So ``sama build`` may run twice into the same root, once per kind, and neither
run may clobber the other. Each build owns (docs/dataset_layout.md, "Clips and pairs in one
root"):

- its shard folder: ``clips/`` or ``pairs/``;
- its error shards in the shared ``errors/`` folder, told apart by name: shards are named
  ``part-{run_id}-NNNNN.parquet`` and a pair build's run ids start with ``pairs-``, so its error
  shards are ``part-pairs-*`` and a clip build's are every other ``part-*`` (the rows say it too:
  ``errors/v1`` ``record_kind``);
- its resume state: ``_state/`` (clips: ``fingerprint.json``, ``done/``, as before pairs existed)
  or ``_state/pairs/``;
- its resolved config: ``build_config.yaml`` (clips) or ``build_config_pairs.yaml``.

``summary.json`` is shared: a build rewrites it with its own inputs and keeps the inputs of the
other kind (``merge_summary``), so ``sama validate`` checks that every input of both builds is
accounted for. Two builds must not run into the same root at the same time.
"""

from __future__ import annotations

import posixpath
from typing import Any

BUILD_KINDS: tuple[str, ...] = ("clips", "pairs")
STATE_DIR = "_state"


def state_dir(kind: str) -> str:
    """Resume state of ``kind``, relative to ROOT (clips keep the pre-pairs location)."""
    return STATE_DIR if kind == "clips" else posixpath.join(STATE_DIR, kind)


def run_prefix(kind: str) -> str:
    """Prefix of a build's run ids, hence of its shard and marker names."""
    return "" if kind == "clips" else f"{kind}-"


def owns_error_shard(kind: str, name: str) -> bool:
    """Whether the error shard called ``name`` (a basename) was written by a ``kind`` build."""
    others = [k for k in BUILD_KINDS if k != "clips" and name.startswith(f"part-{k}-")]
    return kind in others if kind != "clips" else not others


def config_file(kind: str) -> str:
    """Where a ``kind`` build writes its resolved config, relative to ROOT."""
    return "build_config.yaml" if kind == "clips" else f"build_config_{kind}.yaml"


def summary_kind(summary: dict) -> str:
    """The kind a build summary describes (its ``spec``, e.g. ``pairs/v1``)."""
    return str(summary.get("spec", "clips/v1")).split("/")[0]


def _own(summary: dict) -> dict:
    """A build summary without the keys ``merge_summary`` recomputes for the whole root."""
    return {k: v for k, v in summary.items() if k not in ("inputs", "by_kind", "kinds")}


def merge_summary(old: dict | None, new: dict, kind: str) -> dict:
    """``summary.json`` of a root after a ``kind`` build whose summary is ``new``.

    Without inputs of another kind in ``old`` this is ``new`` as is (a single-kind root looks
    exactly as before). Otherwise: ``new``'s entries, ``inputs`` = the other kinds' inputs then
    ``new``'s, ``num_inputs`` and ``inputs_unaccounted`` over all of them, and ``by_kind`` with
    each kind's own summary (its stats; its inputs stay in ``inputs``).
    """
    others = [i for i in (old or {}).get("inputs") or [] if _input_kind(i) not in (kind, None)]
    if not others:
        return new
    by_kind = dict(old.get("by_kind") or {summary_kind(old): _own(old)})
    by_kind[kind] = _own(new)
    unaccounted = [
        *(x for k, s in by_kind.items() if k != kind for x in s.get("inputs_unaccounted", [])),
        *new.get("inputs_unaccounted", []),
    ]
    inputs = [*others, *new.get("inputs", [])]
    return {
        **new,
        "inputs": inputs,
        "num_inputs": len(inputs),
        "inputs_unaccounted": sorted(unaccounted),
        "kinds": sorted(by_kind),
        "by_kind": dict(sorted(by_kind.items())),
    }


def without_kind(summary: dict | None, kind: str) -> dict | None:
    """``summary.json`` once the ``kind`` build is removed (``if_exists=overwrite``); None when
    nothing else is left."""
    if not summary:
        return None
    others = [i for i in summary.get("inputs") or [] if _input_kind(i) not in (kind, None)]
    if not others:
        return None
    by_kind = {k: v for k, v in (summary.get("by_kind") or {}).items() if k != kind}
    if len(by_kind) == 1:  # back to a single-kind root: that kind's summary, as it wrote it
        ((_, own),) = by_kind.items()
        return {**own, "inputs": others}
    return {**summary, "inputs": others, "num_inputs": len(others), "by_kind": by_kind}


def _input_kind(item: Any) -> str | None:
    return item.get("kind") if isinstance(item, dict) else None
