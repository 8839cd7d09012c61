"""What a built dataset directory holds, and how the tools read it (docs/dataset_layout.md).

```
ROOT/clips/*.parquet     clips/v1 shards        ROOT/build_config.yaml  resolved build config
ROOT/pairs/*.parquet     pairs/v1 shards        ROOT/summary.json       build stats (below)
ROOT/errors/*.parquet    errors/v1 shards       ROOT/build_config_pairs.yaml  of a pair build
```

A root may hold a clip build and a pair build (``pipelines/engine/root.py``); ``build_config.yaml``
is the clip build's, and a root with pairs only is described by ``build_config_pairs.yaml``.

ROOT is any fsspec URI, in the build layout above or the published one (``data/<kind>/...``,
``sama.shards.LAYOUTS``). ``summary.json`` is written by the build; the tools read:

- ``inputs``: the build's inputs, each a string id or ``{"id": ..., "uri": ..., "kind": ...}``.
  The id is the one the rows carry: clips ``video_id``, pairs ``pair_id``, errors ``item_id``.
  ``sama validate`` checks that every input is accounted for in one of those columns.
- ``num_inputs``: how many inputs (checked against ``inputs``; alone, a count-only check).
- any other scalar entries (``wall_s``, ``started_at``, ``sama_version``...) are shown as build
  stats in the report and the dataset card.
"""

from __future__ import annotations

import json
import posixpath
from dataclasses import dataclass, field

import yaml

from pipelines.engine.root import INPUTS_DIR, STATE_DIR, config_file
from sama.shards import list_shards, url_to_fs

KINDS: tuple[str, ...] = ("clips", "pairs", "errors")
SUMMARY_FILE = "summary.json"
BUILD_CONFIG_FILE = "build_config.yaml"
# the column of each kind that names the input a row came from
INPUT_ID_COLUMNS: dict[str, str] = {"clips": "video_id", "pairs": "pair_id", "errors": "item_id"}


@dataclass
class DatasetDir:
    """The files of one built dataset; ``shards[kind]`` lists shard paths or URIs."""

    root: str
    fs: object
    shards: dict[str, list[str]] = field(default_factory=dict)
    leftovers: list[str] = field(default_factory=list)  # `.tmp-*` files of interrupted writes
    summary: dict | None = None
    summary_error: str | None = None
    build_config: dict | None = None
    build_config_error: str | None = None
    # ids of the inputs the builds declared (their inputs tables, engine/listing.py); None for
    # a root without them (then summary.json's counts are all there is to check against)
    declared_inputs: list[str] | None = None


def declared_inputs(fs, path: str) -> list[str] | None:
    """Input ids of every build kind's inputs table under ``path`` (``_state/<kind>/inputs/``)."""
    import pyarrow.parquet as pq

    state = posixpath.join(path, STATE_DIR)
    if not fs.exists(state):
        return None
    ids: list[str] | None = None
    for kind, column in INPUT_ID_COLUMNS.items():
        folder = posixpath.join(state, kind, INPUTS_DIR)
        if kind == "errors" or not fs.exists(folder):
            continue
        ids = ids or []
        for p in sorted(fs.ls(folder, detail=False)):
            if p.endswith(".parquet") and not posixpath.basename(p).startswith("."):
                with fs.open(p, "rb") as f:
                    ids += pq.read_table(f, columns=[column]).column(0).to_pylist()
    return ids


def open_dataset_dir(root: str, fs=None) -> DatasetDir:
    """List the shards of every kind and read ``summary.json`` / ``build_config.yaml``."""
    fs, path = url_to_fs(root, fs)
    out = DatasetDir(root=root, fs=fs)
    for kind in KINDS:
        found = list_shards(root, kind, fs, include_temp=True)
        out.shards[kind] = [p for p in found if not posixpath.basename(p).startswith(".")]
        out.leftovers += [p for p in found if posixpath.basename(p).startswith(".")]
    out.summary, out.summary_error = _read_text(fs, posixpath.join(path, SUMMARY_FILE), json.loads)
    out.build_config, out.build_config_error = _read_text(
        fs, posixpath.join(path, BUILD_CONFIG_FILE), yaml.safe_load
    )
    pairs_config = posixpath.join(path, config_file("pairs"))
    if out.build_config is None and fs.exists(pairs_config):  # a root with pairs only
        out.build_config, out.build_config_error = _read_text(fs, pairs_config, yaml.safe_load)
    out.declared_inputs = declared_inputs(fs, path)
    return out


def _read_text(fs, path: str, parse) -> tuple[dict | None, str | None]:
    if not fs.exists(path):
        return None, f"{posixpath.basename(path)} is missing"
    try:
        with fs.open(path, "rb") as f:
            data = parse(f.read().decode())
    except (ValueError, yaml.YAMLError, UnicodeDecodeError) as e:
        return None, f"{posixpath.basename(path)} cannot be parsed: {e}"
    if not isinstance(data, dict):
        return None, f"{posixpath.basename(path)} must hold a mapping at the top level"
    return data, None


def input_ids(summary: dict) -> list[str] | None:
    """Ids of the build's inputs from ``summary["inputs"]``, or None if only a count is known."""
    inputs = summary.get("inputs")
    if not isinstance(inputs, list):
        return None
    out = []
    for item in inputs:
        out.append(str(item.get("id")) if isinstance(item, dict) else str(item))
    return out


def num_inputs(summary: dict | None) -> int | None:
    if not summary:
        return None
    if isinstance(summary.get("num_inputs"), int):
        return summary["num_inputs"]
    ids = input_ids(summary)
    if ids is not None:
        return len(ids)
    return summary["inputs"] if isinstance(summary.get("inputs"), int) else None


def build_stats(summary: dict | None) -> dict[str, object]:
    """The scalar entries of ``summary.json`` (for the report and the card)."""
    if not summary:
        return {}
    out: dict[str, object] = {}
    for k, v in summary.items():
        if k == "inputs":
            continue
        if isinstance(v, str | int | float | bool):
            out[k] = v
        elif isinstance(v, dict) and all(isinstance(x, str | int | float) for x in v.values()):
            out.update({f"{k}.{kk}": vv for kk, vv in v.items()})
    return out


def license_of(build_config: dict | None, key: str = "license") -> str | None:
    """The licence of the dataset: ``license`` (or ``key``, e.g. ``license_link``) at the top of
    the build config or under ``output`` / ``dataset`` / ``card`` / ``publish`` (first found)."""
    if not build_config:
        return None
    sections = ("output", "dataset", "card", "publish")
    for section in (build_config, *(build_config.get(k) for k in sections)):
        if isinstance(section, dict) and isinstance(section.get(key), str):
            return section[key]
    return None
