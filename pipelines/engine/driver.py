"""The one driver behind ``sama build``, for every recipe (clips, edit pairs).

``run_build(cfg, kind)``, top to bottom:

1. take the root's lease (``engine/lease.py``): one build per root at a time;
2. apply ``output.if_exists`` and check the fingerprint (``engine/resume.py``), read the ledger
   (index + sidecars, in parallel), delete what killed writes left behind;
3. list the inputs into the declared inputs table, streaming (``engine/listing.py``);
4. write the resolved config, redacted (``sama.redact``: no credentials in any output);
5. if anything is left to do: start Ray, describe the models (provenance), run the stages with
   the workers writing shards (``engine/runner.py``), counting completed inputs from the
   sidecars under a progress bar;
6. compact the sidecars into the index, write ``summary.json`` (counts, errors by kind and
   stage, hours of video, bytes, per-stage statistics; no per-input lists: those are the inputs
   table and the sidecars) and print it;
7. fail (``BuildFailed``, exit code 1) when more than ``engine.max_error_rate`` of the inputs
   failed.

What differs between recipes (stages, listing, record kind, provenance, summary lines) is a
``BuildKind``; this module names no record kind.
"""

from __future__ import annotations

import json
import posixpath
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import fsspec
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import yaml

import sama
from datasets_spec.provenance import stable_hash
from pipelines.engine import runner
from pipelines.engine.lease import hold
from pipelines.engine.listing import write_inputs
from pipelines.engine.resume import BuildState, InputTracker, Ledger
from pipelines.engine.root import MAIN_CONFIG, SUMMARY_FILE, config_file, merge_summary
from pipelines.engine.stage import Registry, Stage
from pipelines.engine.writer import RecordKind, WriteSettings, open_atomic
from sama.config import config_hash, to_dict
from sama.errors import SamaError
from sama.redact import redact, redact_url


class BuildFailed(SamaError):
    """The build ran, but more inputs failed than ``engine.max_error_rate`` allows."""


@dataclass(frozen=True)
class BuildKind:
    """What one recipe plugs into ``run_build``."""

    record: RecordKind
    registry: Registry
    source_columns: tuple[str, ...]  # the listing's columns (the inputs table)
    sink_columns: tuple[str, ...]  # what the writer needs from the last stage
    list_inputs: Callable[[Any], Iterator[pa.Table]]  # the listing, streamed in chunks
    listing_stage: str  # the stage named in listing error rows (duplicate ids)
    make_stages: Callable[[Any], list[Stage]]
    provenance: Callable[[Any, dict], dict]
    check_same_models: Callable[[BuildState, dict, str], None]
    row_bytes: Callable[[Any, dict], int]  # estimated stored bytes of one row
    fingerprint: Callable[[Any], dict]  # the config that decides the rows
    label: str  # starts the printed lines ("sama build")
    noun: str  # names the inputs in them
    bar_unit: str
    main_config: bool = False  # also writes ROOT/build_config.yaml (the root's main config)

    @property
    def name(self) -> str:
        return self.record.name


def redacted_config(cfg: Any) -> dict:
    """The resolved config as written to every output: no credentials (``sama.redact``)."""
    return redact(to_dict(cfg))


def run_build(cfg: Any, kind: BuildKind) -> dict:
    """Run the ``kind`` build described by ``cfg``; returns its summary (also merged into
    ``summary.json``). Raises ``BuildFailed`` after writing it when too many inputs failed."""
    t0, started = time.monotonic(), datetime.now(UTC).isoformat(timespec="seconds")
    fs, root = fsspec.core.url_to_fs(cfg.output.uri, **cfg.output.storage_options)
    uri = redact_url(cfg.output.uri)
    e = cfg.engine
    with hold(fs, root, kind.name, e.lease_ttl_s, uri, e.take_over_lease):
        state = BuildState(fs, root, kind.record)
        resumed = state.prepare(kind.fingerprint(cfg), cfg.output.if_exists, uri)
        ledger = state.clean(state.load())
        done = ledger.done_ids()
        stages = kind.make_stages(cfg)
        runner.plan(stages, kind.source_columns, kind.sink_columns)  # wiring errors: now
        listed = write_inputs(fs, root, kind.name, kind.list_inputs(cfg), kind.record.input_column,
                              done, kind.listing_stage)  # fmt: skip
        _write_configs(fs, root, kind, cfg)
        print(f"{kind.label}: {listed.total} {kind.noun}, {listed.total - listed.todo} already "
              f"built, {listed.todo} to do -> {uri}", file=sys.stderr, flush=True)  # fmt: skip
        this_run = _Run()
        if listed.todo:  # nothing to do: no Ray, no models
            with runner.ray_session(cfg):
                prov = kind.provenance(cfg, runner.describe(cfg, stages))
                kind.check_same_models(state, prov, uri)
                _run_stages(cfg, kind, state, ledger, stages, listed, done, prov, this_run, fs)
        fs.invalidate_cache()  # the workers wrote: forget every listing this process cached
        ledger = state.load()
        state.compact(ledger)
        this_run.wall_s = time.monotonic() - t0
        summary = summarize(cfg, kind, state, ledger, listed, this_run, resumed, started)
        old = _read_json(fs, posixpath.join(root, SUMMARY_FILE))
        _write(fs, posixpath.join(root, SUMMARY_FILE),
               json.dumps(merge_summary(old, summary, kind.name), indent=1) + "\n")  # fmt: skip
    print(format_summary(kind, summary), file=sys.stderr, flush=True)
    rate = summary["inputs_failed"] / max(1, summary["num_inputs"])
    if rate > e.max_error_rate:
        raise BuildFailed(
            f"{summary['inputs_failed']} of {summary['num_inputs']} {kind.noun} failed "
            f"({rate:.1%}), more than engine.max_error_rate={e.max_error_rate:g}; see "
            f"{uri}/errors/ (`sama validate` / `sama report` summarise them)"
        )
    return summary


@dataclass
class _Run:
    """This run's figures, from the sidecars the write tasks returned."""

    rows: int = 0
    error_rows: int = 0
    skipped_rows: int = 0
    bytes: int = 0
    shards: int = 0
    seconds: float = 0.0
    completed: int = 0
    wall_s: float = 0.0
    stages: dict | None = None


def _run_stages(cfg, kind: BuildKind, state: BuildState, ledger: Ledger, stages, listed, done,
                prov: dict, this_run: _Run, fs) -> None:  # fmt: skip
    from tqdm import tqdm

    o = cfg.output
    partial = ledger.partial()
    skip = state.written_row_ids(ledger, partial.column("input_id").combine_chunks())
    tracker = InputTracker(partial)
    ws = WriteSettings(
        root=cfg.output.uri, storage_options=dict(o.storage_options), provenance=prov,
        shard_bytes=int(o.shard_size_mb * 2**20), row_group_rows=o.row_group_rows,
        row_group_bytes=int(o.row_group_mb * 2**20), run_id=state.run_id,
    )  # fmt: skip
    per_row = max(1, kind.row_bytes(cfg, prov))
    rows_per_shard = max(1, min(o.max_rows_per_shard, ws.shard_bytes // per_row))
    bar = tqdm(total=listed.todo, desc=f"build {kind.name}", unit=kind.bar_unit, file=sys.stderr,
               mininterval=1.0, dynamic_ncols=True)  # fmt: skip

    def on_sidecar(sc: dict) -> None:
        n = tracker.add(sc["inputs"])
        this_run.rows += sc["rows"]
        this_run.error_rows += sc["error_rows"]
        this_run.skipped_rows += sc.get("skipped_rows", 0)
        this_run.bytes += sc["bytes"]
        this_run.shards += 1
        this_run.seconds += sum(sc["inputs"]["seconds"])
        this_run.completed += n
        bar.update(n)
        bar.set_postfix({kind.name: this_run.rows, "errors": this_run.error_rows}, refresh=False)

    job = runner.Job(
        cfg=cfg, stages=stages, registry=kind.registry, source_columns=kind.source_columns,
        sink_columns=kind.sink_columns, record=kind.record, write=ws, listed=listed,
        open_fs=lambda: fsspec.core.url_to_fs(o.uri, **o.storage_options)[0], done=done,
        skip=skip, rows_per_shard=rows_per_shard, on_sidecar=on_sidecar,
    )  # fmt: skip
    try:
        this_run.stages = runner.run(job)
    finally:
        bar.close()


def _write_configs(fs: Any, root: str, kind: BuildKind, cfg: Any) -> None:
    text = yaml.safe_dump(redacted_config(cfg), sort_keys=False)
    _write(fs, posixpath.join(root, config_file(kind.name)), text)
    if kind.main_config:
        _write(fs, posixpath.join(root, MAIN_CONFIG), text)


def _read_json(fs: Any, path: str) -> dict | None:
    if not fs.exists(path):
        return None
    with fs.open(path, "rb") as f:
        return json.loads(f.read())


def _write(fs: Any, path: str, text: str) -> None:
    with open_atomic(fs, path) as f:
        f.write(text.encode())


# ---- the summary ----------------------------------------------------------------------------
def _sum_json(column: pa.ChunkedArray) -> dict[str, int]:
    total: Counter = Counter()
    for text in column.to_pylist():
        total.update(json.loads(text or "{}"))
    return dict(sorted(total.items()))


def _counts_by(column: pa.ChunkedArray) -> dict[str, dict[str, int]]:
    out: dict[str, Counter] = {}
    for text in column.to_pylist():
        for col, counts in json.loads(text or "{}").items():
            out.setdefault(col, Counter()).update(counts)
    return {k: dict(sorted(v.items())) for k, v in out.items()}


def unaccounted(state: BuildState, complete: pa.Array, limit: int = 20) -> tuple[int, list[str]]:
    """Inputs of the inputs table that no sidecar completes (count, the first ``limit``)."""
    n, first = 0, []
    for path in state.inputs_paths():
        with state.fs.open(path, "rb") as f:
            ids = pq.read_table(f, columns=[state.kind.input_column]).column(0)
        missing = ids.filter(pc.invert(pc.is_in(ids, value_set=complete)))
        n += len(missing)
        first += missing.slice(0, max(0, limit - len(first))).to_pylist()
    return n, first


def summarize(cfg, kind: BuildKind, state: BuildState, ledger: Ledger, listed, run: _Run,
              resumed: bool, started: str) -> dict:  # fmt: skip
    """Counts over the whole output (earlier runs included) plus this run's figures."""
    per_input = ledger.per_input()
    complete = per_input.filter(per_input.column("complete"))
    failed = complete.filter(pc.equal(complete.column("data_rows"), 0)).num_rows
    n_missing, missing = unaccounted(state, complete.column("input_id").combine_chunks())
    shards = ledger.shards
    wall = max(run.wall_s, 1e-9)
    rows = int(pc.sum(shards.column("rows")).as_py() or 0)
    e = cfg.engine
    return {
        "spec": kind.record.spec.id,
        "sama_version": sama.__version__,
        "output": redact_url(cfg.output.uri),
        "num_inputs": listed.total,
        "inputs_done": complete.num_rows,
        "inputs_with_rows": complete.num_rows - failed,
        "inputs_failed": failed,
        "num_inputs_unaccounted": n_missing,
        "inputs_unaccounted": missing,
        "duplicate_ids_in_listing": listed.duplicates,
        kind.name: rows,
        "errors": int(pc.sum(shards.column("error_rows")).as_py() or 0),
        **{"errors_by_kind": _sum_json(shards.column("errors_by_kind")),
           "errors_by_stage": _sum_json(shards.column("errors_by_stage"))},  # fmt: skip
        **{f"{kind.name}_by_{c}": v for c, v in _counts_by(shards.column("counts_by")).items()},
        "shards": shards.num_rows,
        "bytes_written": int(pc.sum(shards.column("bytes")).as_py() or 0),
        "hours_processed": round(float(pc.sum(per_input.column("seconds")).as_py() or 0) / 3600, 4),
        "config_hash": config_hash(cfg),
        "output_fingerprint": stable_hash(kind.fingerprint(cfg)),
        "wall_s": round(run.wall_s, 3),
        "run": {
            "resumed": resumed,
            "started_at": started,
            "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "processed_inputs": listed.todo,
            "skipped_inputs": listed.total - listed.todo,
            "completed_inputs": run.completed,
            kind.name: run.rows,
            "errors": run.error_rows,
            "skipped_rows": run.skipped_rows,
            "shards": run.shards,
            "bytes_written": run.bytes,
            "hours_processed": round(run.seconds / 3600, 4),
            "wall_s": round(run.wall_s, 3),
            "inputs_per_s": round(run.completed / wall, 3),
            f"{kind.name}_per_s": round(run.rows / wall, 3),
            "mb_per_s": round(run.bytes / 2**20 / wall, 3),
            "executor": e.executor,
            "ray_address": redact_url(e.ray_address) or "local",
            "stages": run.stages or {},
        },
    }


def format_summary(kind: BuildKind, s: dict) -> str:
    r = s["run"]
    errs = ", ".join(f"{k} {n}" for k, n in s["errors_by_kind"].items()) or "none"
    lines = [
        f"{kind.label} done in {r['wall_s']:.1f}s: {s['num_inputs']} {kind.noun} "
        f"({r['processed_inputs']} processed, {r['skipped_inputs']} already built), "
        f"{s[kind.name]} {kind.name}, {s['errors']} errors, {s['inputs_failed']} {kind.noun} failed",
        f"  this run: {r[kind.name]} {kind.name}, {r['errors']} error rows, {r['shards']} shards, "
        f"{r['bytes_written'] / 2**20:.1f} MB, {r['hours_processed']:.3f} h of video, "
        f"{r['inputs_per_s']:.2f} {kind.noun}/s",
        f"  errors by kind: {errs}",
        f"  output: {s['output']}",
    ]
    for key, counts in s.items():
        if key.startswith(f"{kind.name}_by_"):
            lines.insert(1, f"  {key.replace('_', ' ')}: " + ", ".join(f"{n} {k}" for k, n in counts.items()))
    if s["num_inputs_unaccounted"]:
        lines.append(f"  NOT accounted for: {s['num_inputs_unaccounted']} ({s['inputs_unaccounted'][:10]})")
    return "\n".join(lines)
