"""Resume: a config fingerprint, completion computed from the writers' sidecars, no duplicates.

State of a ``kind`` build lives under ``ROOT/_state/<kind>/`` (``engine/root.py``):

- ``fingerprint.json``: the part of the build config that decides the rows. A re-run with a
  different fingerprint refuses to write into the same output, naming the differences.
- ``sidecars/*.json``: one per write task (``engine/writer.py``): the shards it wrote and, per
  input, its data rows, error rows and (from the input's announcing row) its total. A sidecar
  is written after its shards, so a shard no sidecar names is a killed write: ``clean()``
  deletes it (its rows are made again).
- ``index/``: sidecars compacted into two Parquet files per run (``shards-*`` and ``inputs-*``),
  so starting a build over ~20k shards reads a few files, not 20k markers one after another;
  the rest (sidecars of a killed run) are read in parallel (``load``).

An input is **done** when its rows over all sidecars add up to its announced total; a re-run
drops done inputs from the listing before anything is decoded. An input with some rows but
not all (a build killed mid-input) is processed again, and the ids of its rows already in
shards go to the writers as a skip set, so the resumed dataset has exactly the rows of an
uninterrupted build and no duplicates. ``InputTracker`` is the driver's O(1)-per-row view of the
same accounting while a build runs (progress, completed inputs).
"""

from __future__ import annotations

import json
import posixpath
import time
import uuid
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from datasets_spec.provenance import read_provenance
from pipelines.engine.root import (
    FINGERPRINT,
    INDEX_DIR,
    INPUTS_DIR,
    SIDECAR_DIR,
    SUMMARY_FILE,
    config_file,
    shard_prefix,
    state_dir,
    without_kind,
)
from pipelines.engine.writer import RecordKind, open_atomic
from sama.errors import ConfigError

READ_THREADS = 32
INPUT_FIELDS = (("input_id", pa.string()), ("data_rows", pa.int64()), ("error_rows", pa.int64()),
                ("announced", pa.int64()), ("seconds", pa.float64()), ("sidecar", pa.string()))  # fmt: skip
INPUTS_SCHEMA = pa.schema(INPUT_FIELDS)
SHARDS_SCHEMA = pa.schema(
    [("sidecar", pa.string()), ("data", pa.list_(pa.string())), ("errors", pa.string()),
     ("rows", pa.int64()), ("error_rows", pa.int64()), ("bytes", pa.int64()),
     ("errors_by_kind", pa.string()), ("errors_by_stage", pa.string()),
     ("counts_by", pa.string())]
)  # fmt: skip


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


@dataclass
class Ledger:
    """What the sidecars say: one row per (sidecar, input) and one per sidecar."""

    inputs: pa.Table  # INPUTS_SCHEMA
    shards: pa.Table  # SHARDS_SCHEMA

    def per_input(self) -> pa.Table:
        """input_id, data_rows, error_rows, announced, seconds, complete (over all sidecars)."""
        if self.inputs.num_rows == 0:
            empty = {n: pa.array([], t) for n, t in INPUT_FIELDS[:5]}
            return pa.table({**empty, "complete": pa.array([], pa.bool_())})
        g = self.inputs.group_by("input_id").aggregate(
            [("data_rows", "sum"), ("error_rows", "sum"), ("announced", "max"), ("seconds", "max")]
        )
        g = g.rename_columns(["input_id", "data_rows", "error_rows", "announced", "seconds"])
        total = pc.add(g.column("data_rows"), g.column("error_rows"))
        announced = g.column("announced")
        complete = pc.and_(pc.greater(announced, 0), pc.equal(total, announced))
        return g.append_column("complete", complete)

    def done_ids(self) -> pa.Array:
        p = self.per_input()
        return p.filter(p.column("complete")).column("input_id").combine_chunks()

    def partial(self) -> pa.Table:
        p = self.per_input()
        return p.filter(pc.invert(p.column("complete")))

    def referenced(self) -> set[str]:
        """Shard paths (relative to ROOT) that some sidecar names."""
        out = {p for paths in self.shards.column("data").to_pylist() for p in paths or []}
        out |= {p for p in self.shards.column("errors").to_pylist() if p}
        return out


def sidecar_tables(sidecars: list[dict]) -> Ledger:
    """The ledger rows of loose sidecars (as the writers return them)."""
    rows: dict[str, list] = {n: [] for n, _ in INPUT_FIELDS}
    shard_rows: dict[str, list] = {f.name: [] for f in SHARDS_SCHEMA}
    for sc in sidecars:
        inp = sc["inputs"]
        n = len(inp["ids"])
        rows["input_id"] += inp["ids"]
        rows["data_rows"] += inp["data_rows"]
        rows["error_rows"] += inp["error_rows"]
        rows["announced"] += inp["announced"]
        rows["seconds"] += inp["seconds"]
        rows["sidecar"] += [sc["name"]] * n
        shard_rows["sidecar"].append(sc["name"])
        shard_rows["data"].append(sc["data"])
        shard_rows["errors"].append(sc["errors"])
        for k in ("rows", "error_rows", "bytes"):
            shard_rows[k].append(int(sc[k]))
        shard_rows["errors_by_kind"].append(json.dumps(sc.get("errors_by_kind") or {}))
        shard_rows["errors_by_stage"].append(json.dumps(sc.get("errors_by_stage") or {}))
        shard_rows["counts_by"].append(json.dumps(sc.get("counts_by") or {}))
    return Ledger(pa.table(rows, schema=INPUTS_SCHEMA), pa.table(shard_rows, schema=SHARDS_SCHEMA))


class BuildState:
    """The resume state of one ``kind`` of build in an output root (any fsspec filesystem)."""

    def __init__(self, fs: Any, root: str, kind: RecordKind) -> None:
        self.fs, self.root, self.kind = fs, root.rstrip("/") or "/", kind
        self.state = posixpath.join(self.root, state_dir(kind.name))
        self.run_id = time.strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6]

    def path(self, *parts: str) -> str:
        return posixpath.join(self.root, *parts)

    def _ls(self, rel: str) -> list[str]:
        d = self.path(rel)
        self.fs.invalidate_cache(d)  # the writers are other processes: never a cached listing
        if not self.fs.exists(d):
            return []
        return sorted(str(p) for p in self.fs.ls(d, detail=False))

    def shard_paths(self, folder: str) -> list[str]:
        """This kind's shards in ``folder`` (its own folder, or ``errors``), full paths."""
        prefix = shard_prefix(self.kind.name)
        return [p for p in self._ls(folder) if posixpath.basename(p).startswith(prefix)
                and p.endswith(".parquet")]  # fmt: skip

    def owned(self) -> list[str]:
        """What this kind's build holds under ROOT (relative paths): what overwrite removes."""
        k = self.kind.name
        out = [p for p in (k, state_dir(k), config_file(k)) if self.fs.exists(self.path(p))]
        out += [posixpath.relpath(p, self.root) for p in self.shard_paths("errors")]
        return out

    # ---- start-up ----------------------------------------------------------------------
    def prepare(self, fingerprint: dict, if_exists: str, uri: str) -> bool:
        """Apply ``output.if_exists`` (the caller holds the root's lease); True = resuming."""
        existing = self.owned()
        if existing and if_exists == "error":
            raise ConfigError(
                f"output {uri!r} already holds a {self.kind.name} build ({existing[:6]}); choose "
                "a new output.uri, or set output.if_exists=resume or overwrite"
            )
        if existing and if_exists == "overwrite":
            for p in existing:
                self.fs.rm(self.path(p), recursive=True)
            self._forget_summary()
            existing = []
        fp_path = posixpath.join(self.state, FINGERPRINT)
        if self.fs.exists(fp_path):
            old = json.loads(self.fs.cat_file(fp_path))
            changes = diff(old, fingerprint)
            if changes:
                raise ConfigError(
                    f"output {uri!r} was built with a different config, and the rows would mix:\n"
                    + "\n".join(f"  {c}" for c in changes[:20])
                    + "\nuse a new output.uri for this config, or output.if_exists=overwrite "
                    "to replace the old build"
                )
            return True
        if any(p == self.kind.name or p.startswith("errors/") for p in existing):
            raise ConfigError(
                f"output {uri!r} holds {self.kind.name} shards but no "
                f"{state_dir(self.kind.name)}/{FINGERPRINT}: it was not written by this build; "
                "choose a new output.uri"
            )
        self.write_json(fp_path, fingerprint)
        return False

    def _forget_summary(self) -> None:
        """Rewrite ``summary.json`` without this kind (delete it if nothing else is left)."""
        path = self.path(SUMMARY_FILE)
        if not self.fs.exists(path):
            return
        kept = without_kind(json.loads(self.fs.cat_file(path)), self.kind.name)
        if kept is None:
            self.fs.rm(path)
        else:
            self.write_json(path, kept)

    def write_json(self, path: str, obj: Any) -> None:
        with open_atomic(self.fs, path) as f:
            f.write(json.dumps(obj, indent=1, sort_keys=True).encode())

    # ---- the ledger --------------------------------------------------------------------
    def load(self) -> Ledger:
        """Index files + loose sidecars, read in parallel."""
        index = self._ls(posixpath.join(state_dir(self.kind.name), INDEX_DIR))
        ids = {posixpath.basename(p)[len("inputs-"):-8] for p in index
               if posixpath.basename(p).startswith("inputs-")}  # fmt: skip
        pairs = [i for i in sorted(ids)
                 if any(posixpath.basename(p) == f"shards-{i}.parquet" for p in index)]  # fmt: skip
        idx = posixpath.join(self.state, INDEX_DIR)
        paths = [posixpath.join(idx, f"{w}-{i}.parquet") for i in pairs for w in ("inputs", "shards")]
        tables = self._parallel(lambda p: pq.read_table(self.fs.open(p, "rb")), paths)
        inputs, shards, covered = [], [], set()
        for t_in, t_sh in zip(tables[0::2], tables[1::2], strict=True):
            if covered:  # a compaction killed before deleting the pair it replaced: once each
                seen = pa.array(sorted(covered), pa.string())
                t_in = t_in.filter(pc.invert(pc.is_in(t_in.column("sidecar"), value_set=seen)))
                t_sh = t_sh.filter(pc.invert(pc.is_in(t_sh.column("sidecar"), value_set=seen)))
            covered.update(t_sh.column("sidecar").to_pylist())
            inputs.append(t_in.cast(INPUTS_SCHEMA))
            shards.append(t_sh.cast(SHARDS_SCHEMA))
        loose = [p for p in self._ls(posixpath.join(state_dir(self.kind.name), SIDECAR_DIR))
                 if p.endswith(".json") and posixpath.basename(p)[:-5] not in covered
                 and not posixpath.basename(p).startswith(".")]  # fmt: skip
        extra = sidecar_tables(self._parallel(lambda p: json.loads(self.fs.cat_file(p)), loose))
        return Ledger(
            pa.concat_tables([*inputs, extra.inputs]), pa.concat_tables([*shards, extra.shards])
        )

    def _parallel(self, fn, items: list) -> list:
        if len(items) <= 1:
            return [fn(x) for x in items]
        with ThreadPoolExecutor(min(READ_THREADS, len(items))) as pool:
            return list(pool.map(fn, items))

    def clean(self, ledger: Ledger) -> Ledger:
        """Delete temp files and shards no sidecar names (killed writes); drop sidecars whose
        shards are gone (someone removed them: their inputs are made again)."""
        mine = [*self._ls(self.kind.name), *self.shard_paths("errors")]
        present = {posixpath.relpath(p, self.root) for p in mine}
        temp = [p for folder in (self.kind.name, "errors", posixpath.join(
                state_dir(self.kind.name), SIDECAR_DIR)) for p in self._ls(folder)
                if posixpath.basename(p).startswith(".tmp-")]  # fmt: skip
        referenced = ledger.referenced()
        orphans = [self.path(p) for p in present - referenced if p.endswith(".parquet")
                   and posixpath.basename(p).startswith(shard_prefix(self.kind.name))]  # fmt: skip
        for p in [*temp, *orphans]:
            self.fs.rm(p)
        broken = []
        for name, data, errors in zip(ledger.shards.column("sidecar").to_pylist(),
                                      ledger.shards.column("data").to_pylist(),
                                      ledger.shards.column("errors").to_pylist(), strict=True):  # fmt: skip
            files = [*(data or []), *([errors] if errors else [])]
            if any(f not in present for f in files):
                broken.append(name)
                for f in files:
                    if f in present:
                        self.fs.rm(self.path(f))
        if not broken:
            return ledger
        self.compact(ledger, drop=set(broken))
        return self.load()

    def compact(self, ledger: Ledger, drop: set[str] = frozenset()) -> None:
        """Write the whole ledger (minus ``drop``) as one index pair, then remove what it
        replaces (older index files and loose sidecars)."""
        old_index = self._ls(posixpath.join(state_dir(self.kind.name), INDEX_DIR))
        loose = self._ls(posixpath.join(state_dir(self.kind.name), SIDECAR_DIR))
        if not loose and not drop and len(old_index) <= 2:  # already one compact pair
            return
        keep_in = pc.invert(pc.is_in(ledger.inputs.column("sidecar"), pa.array(sorted(drop), pa.string())))
        keep_sh = pc.invert(pc.is_in(ledger.shards.column("sidecar"), pa.array(sorted(drop), pa.string())))
        inputs, shards = ledger.inputs.filter(keep_in), ledger.shards.filter(keep_sh)
        tag = f"{self.run_id}-{uuid.uuid4().hex[:6]}"
        idx = posixpath.join(self.state, INDEX_DIR)
        for name, table in ((f"shards-{tag}", shards), (f"inputs-{tag}", inputs)):
            with open_atomic(self.fs, posixpath.join(idx, f"{name}.parquet")) as f:
                pq.write_table(table, f, compression="zstd")
        for p in [*old_index, *loose]:
            self.fs.rm(p)

    # ---- what earlier runs wrote ---------------------------------------------------------
    def written_row_ids(self, ledger: Ledger, inputs: pa.Array) -> pa.Array:
        """Ids of the rows already in shards that belong to ``inputs`` (unfinished inputs a
        resumed run makes again): the writers' skip set."""
        if len(inputs) == 0:
            return pa.array([], pa.string())
        names = set(ledger.inputs.filter(pc.is_in(ledger.inputs.column("input_id"),
                                                  value_set=inputs)).column("sidecar").to_pylist())  # fmt: skip
        rows = ledger.shards.filter(pc.is_in(ledger.shards.column("sidecar"),
                                             value_set=pa.array(sorted(names), pa.string())))  # fmt: skip
        jobs = [(p, self.kind.spec.key, self.kind.input_column) for ps in
                rows.column("data").to_pylist() for p in ps or []]  # fmt: skip
        jobs += [(p, "error_id", "item_id") for p in rows.column("errors").to_pylist() if p]

        def read(job):
            path, col, owner = job
            t = pq.read_table(self.fs.open(self.path(path), "rb"), columns=[col, owner])
            return t.filter(pc.is_in(t.column(owner), value_set=inputs)).column(col)

        cols = self._parallel(read, jobs)
        chunks = [c for col in cols for c in col.chunks]
        return pa.chunked_array(chunks, pa.string()).combine_chunks() if chunks else pa.array([], pa.string())

    def existing_provenance(self) -> dict | None:
        return existing_provenance(self.fs, self.root, self.kind.name)

    def inputs_paths(self) -> list[str]:
        return [p for p in self._ls(posixpath.join(state_dir(self.kind.name), INPUTS_DIR))
                if p.endswith(".parquet") and not posixpath.basename(p).startswith(".")]  # fmt: skip


def existing_provenance(fs: Any, root: str, kind: str) -> dict | None:
    """The provenance of a ``kind`` shard already under ``root`` (None when there is none)."""
    folder = posixpath.join(root, kind)
    if not fs.exists(folder):
        return None
    for p in sorted(fs.ls(folder, detail=False)):
        name = posixpath.basename(p)
        if name.startswith(shard_prefix(kind)) and name.endswith(".parquet"):
            with fs.open(p, "rb") as f:
                return read_provenance(pq.read_schema(f))
    return None


class InputTracker:
    """The driver's running view of completion: O(1) per row and per input.

    Fed each write task's sidecar (a few KB); an input is complete once its rows add up to its
    announced total, counting ``prior`` rows an interrupted run already wrote. Completed inputs
    leave the table, so it holds only inputs in flight.
    """

    def __init__(self, prior: pa.Table | None = None) -> None:
        self.open: dict[str, list[int]] = {}  # input -> [rows so far, announced total]
        self.completed = 0
        self.failed = 0  # completed with error rows only
        if prior is not None and prior.num_rows:
            for vid, d, e, a in zip(*(prior.column(c).to_pylist() for c in
                                      ("input_id", "data_rows", "error_rows", "announced")),
                                    strict=True):  # fmt: skip
                self.open[vid] = [int(d) + int(e), int(a), int(d)]

    def add(self, inputs: dict[str, list]) -> int:
        """Count one sidecar's inputs; returns how many inputs this completed."""
        done = 0
        for vid, d, e, a in zip(inputs["ids"], inputs["data_rows"], inputs["error_rows"],
                                inputs["announced"], strict=True):  # fmt: skip
            entry = self.open.get(vid)
            if entry is None:
                entry = self.open[vid] = [0, 0, 0]
            entry[0] += d + e
            entry[2] += d
            if a:
                entry[1] = a
            if entry[1] and entry[0] >= entry[1]:
                del self.open[vid]
                done += 1
                self.failed += entry[2] == 0
        self.completed += done
        return done

    def add_all(self, sidecars: Iterable[dict]) -> int:
        return sum(self.add(sc["inputs"]) for sc in sidecars)
