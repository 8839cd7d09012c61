"""Resume: per-input completion markers, a config fingerprint, and no duplicate rows.

State lives under ``ROOT/_state/`` (the datatrove idea: a task is done when its marker exists):

- ``fingerprint.json``: the part of the build config that decides the rows
  (``pipelines.config.output_fingerprint``). A re-run with a different fingerprint refuses to
  write into the same output, naming the differences, instead of mixing two kinds of rows.
- ``done/*.json``: ids of inputs whose every row (clips and errors) is in a shard. A marker is
  written only after the shards holding those rows were renamed into place, so an input with a
  marker is complete; a re-run drops marked inputs from the listing before anything is decoded.

A build killed at any point (kill -9) leaves at most: ``.tmp-*`` files (removed here), and shards
holding some rows of unmarked inputs. Those inputs are processed again; ``InputTracker`` and the
set of ids already in shards (``existing_ids``) make the writer skip the rows already written,
so the resumed dataset has the same set of rows as an uninterrupted build and no duplicates.

A root may hold a clip build and a pair build (``pipelines/engine/root.py``): ``BuildState(fs,
root, kind)`` sees only what its kind owns (its shard folder, its error shards, its state under
``_state/`` or ``_state/pairs/``), so resuming or overwriting one never touches the other.
"""

from __future__ import annotations

import json
import posixpath
import time
import uuid
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

import pyarrow.parquet as pq

from datasets_spec.provenance import read_provenance
from pipelines.engine.root import (
    config_file,
    owns_error_shard,
    run_prefix,
    state_dir,
    without_kind,
)
from pipelines.engine.writer import open_atomic
from sama.errors import ConfigError, FatalError

FINGERPRINT = "fingerprint.json"
DONE_DIR = "done"
SUMMARY = "summary.json"
# the record kind's id column and input column, per build kind
ROW_IDS = {"clips": ("clip_id", "video_id"), "pairs": ("pair_id", "pair_id")}


def flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(d, dict):
        return {prefix: d}
    out: dict[str, Any] = {}
    for k, v in d.items():
        out.update(flatten(v, f"{prefix}.{k}" if prefix else str(k)))
    return out


def diff(old: dict, new: dict) -> list[str]:
    a, b = flatten(old), flatten(new)
    return [
        f"{k}: {a.get(k)!r} -> {b.get(k)!r}"
        for k in sorted(a.keys() | b.keys())
        if a.get(k) != b.get(k)
    ]


class BuildState:
    """The resume state of one ``kind`` of build (clips or pairs) in an output root (any fsspec
    filesystem)."""

    def __init__(self, fs: Any, root: str, kind: str = "clips") -> None:
        self.fs, self.root, self.kind = fs, root.rstrip("/") or "/", kind
        self.state = posixpath.join(self.root, state_dir(kind))
        stamp = time.strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6]
        self.run_id = run_prefix(kind) + stamp
        self._seq = 0

    def path(self, *parts: str) -> str:
        return posixpath.join(self.root, *parts)

    def owned(self) -> list[str]:
        """What this kind's build holds under ROOT (relative paths): what overwrite removes."""
        out = [p for p in (self.kind, config_file(self.kind)) if self.fs.exists(self.path(p))]
        out += [posixpath.relpath(p, self.root) for p in self.shard_paths("errors")]
        state = [posixpath.join(state_dir(self.kind), n) for n in (FINGERPRINT, DONE_DIR)]
        if self.kind != "clips":  # its own folder under _state/
            state = [state_dir(self.kind)]
        return out + [p for p in state if self.fs.exists(self.path(p))]

    # ---- start-up ----------------------------------------------------------------------
    def prepare(self, fingerprint: dict, if_exists: str, uri: str) -> bool:
        """Apply ``output.if_exists``; returns True when an earlier build is resumed."""
        existing = self.owned()
        if existing and if_exists == "error":
            raise ConfigError(
                f"output {uri!r} already holds a build ({existing[:6]}); choose a new "
                "output.uri, or set output.if_exists=resume or overwrite"
            )
        if existing and if_exists == "overwrite":
            for p in existing:
                self.fs.rm(self.path(p), recursive=True)
            self._forget_summary()
            existing = []
        resumed = False
        fp_path = posixpath.join(self.state, FINGERPRINT)
        if self.fs.exists(fp_path):
            with self.fs.open(fp_path, "rb") as f:
                old = json.loads(f.read())
            changes = diff(old, fingerprint)
            if changes:
                raise ConfigError(
                    f"output {uri!r} was built with a different config, and the rows would mix:\n"
                    + "\n".join(f"  {c}" for c in changes[:20])
                    + "\nuse a new output.uri for this config, or output.if_exists=overwrite "
                    "to replace the old build"
                )
            resumed = True
        elif any(p == self.kind or p.startswith("errors/") for p in existing):
            raise ConfigError(
                f"output {uri!r} holds shards but no {state_dir(self.kind)}/{FINGERPRINT}: "
                "it was not written by this build; choose a new output.uri"
            )
        else:
            self._write_json(fp_path, fingerprint)
        self.remove_leftovers()
        return resumed

    def _forget_summary(self) -> None:
        """Rewrite ``summary.json`` without this kind's inputs (delete it if none are left)."""
        path = self.path(SUMMARY)
        if not self.fs.exists(path):
            return
        with self.fs.open(path, "rb") as f:
            kept = without_kind(json.loads(f.read()), self.kind)
        if kept is None:
            self.fs.rm(path)
        else:
            self._write_json(path, kept)

    def remove_leftovers(self) -> list[str]:
        """Delete ``.tmp-*`` files of writes a killed build left behind."""
        gone = []
        for sub in (self.kind, "errors", posixpath.join(state_dir(self.kind), DONE_DIR)):
            d = self.path(sub)
            if not self.fs.exists(d):
                continue
            for p in self.fs.ls(d, detail=False):
                if posixpath.basename(p).startswith(".tmp-"):
                    self.fs.rm(p)
                    gone.append(p)
        return gone

    # ---- markers -----------------------------------------------------------------------
    def done_inputs(self) -> set[str]:
        d = posixpath.join(self.state, DONE_DIR)
        if not self.fs.exists(d):
            return set()
        done: set[str] = set()
        for p in self.fs.ls(d, detail=False):
            if p.endswith(".json") and not posixpath.basename(p).startswith("."):
                with self.fs.open(p, "rb") as f:
                    done.update(json.loads(f.read())["inputs"])
        return done

    def mark_done(self, ids: Iterable[str]) -> None:
        ids = sorted(set(ids))
        if not ids:
            return
        name = f"{self.run_id}-{self._seq:06d}.json"
        self._seq += 1
        self._write_json(posixpath.join(self.state, DONE_DIR, name), {"inputs": ids})

    def _write_json(self, path: str, obj: Any) -> None:
        with open_atomic(self.fs, path) as f:
            f.write(json.dumps(obj, indent=1, sort_keys=True).encode())

    # ---- what is already written -------------------------------------------------------
    def shard_paths(self, kind: str) -> list[str]:
        """Shards under ``ROOT/kind``; for ``errors``, only those this build kind wrote."""
        d = self.path(kind)
        if not self.fs.exists(d):
            return []
        return sorted(
            p
            for p in self.fs.ls(d, detail=False)
            if p.endswith(".parquet")
            and not (name := posixpath.basename(p)).startswith(".")
            and (kind != "errors" or owns_error_shard(self.kind, name))
        )

    def existing_ids(self, inputs: Iterable[str] | None = None) -> set[str]:
        """Row ids (``clip_id`` / ``pair_id``, ``error_id``) already in this kind's shards (only
        those of ``inputs``, when given: the unfinished inputs a resumed run processes again)."""
        keep = None if inputs is None else set(inputs)
        ids: set[str] = set()
        for kind, col, owner in (
            (self.kind, *ROW_IDS[self.kind]),
            ("errors", "error_id", "item_id"),
        ):
            for p in self.shard_paths(kind):
                with self.fs.open(p, "rb") as f:
                    cols = list(dict.fromkeys([col, owner]))
                    t = pq.read_table(f, columns=cols).to_pydict()
                ids.update(
                    i for i, o in zip(t[col], t[owner], strict=True) if keep is None or o in keep
                )
        return ids

    def existing_provenance(self) -> dict | None:
        for p in self.shard_paths(self.kind):
            with self.fs.open(p, "rb") as f:
                return read_provenance(pq.read_schema(f))
        return None


class InputTracker:
    """Knows when every row of an input has arrived and has been written.

    Each row carries ``row_weight`` (how many of its input's rows it stands for) and
    ``input_rows``: the input's row count, or 0 when another row of the input announces it (the
    single-pass clip cutter announces the count on its last row). An input has arrived once
    its weights sum to the announced count; it is done once, too, none of its rows waits in
    the writer's buffers.
    """

    def __init__(self) -> None:
        self.arrived: dict[str, int] = defaultdict(int)
        self.expected: dict[str, int] = {}
        self.buffered: dict[str, int] = defaultdict(int)
        self.complete: set[str] = set()  # arrived, maybe still buffered
        self.done: set[str] = set()

    def arrive(self, row: dict, buffered: bool) -> bool:
        """Count ``row``; returns True when this completes its input's arrival."""
        vid, announced = row["video_id"], int(row["input_rows"] or 0)
        self.arrived[vid] += int(row["row_weight"])
        if buffered:
            self.buffered[vid] += 1
        if announced and self.expected.setdefault(vid, announced) != announced:
            raise FatalError(
                f"input {vid!r}: rows announce {self.expected[vid]} and {announced} rows"
            )
        want = self.expected.get(vid)
        if want is not None and self.arrived[vid] > want:
            raise FatalError(f"input {vid!r}: more rows than announced ({want})")
        if want is not None and self.arrived[vid] == want:
            self.complete.add(vid)
            return True
        return False

    def written(self, video_ids: Iterable[str]) -> None:
        for vid in video_ids:
            self.buffered[vid] -= 1

    def pop_done(self) -> list[str]:
        """Inputs that became done since the last call."""
        new = [v for v in self.complete - self.done if self.buffered[v] == 0]
        self.done.update(new)
        return new
