"""The one driver behind ``sama build``, for both kinds of build (clips and edit pairs).

A clip build (``pipelines/build.py``) and a pair build (``pipelines/pairs/recipe.py``) run the
same steps: list the inputs in the driver, drop those a previous run finished
(``pipelines/engine/resume.py``), write the resolved config, run the stages on Ray Data
(``pipelines/engine/runner.py``) into a driver-side shard writer under a progress bar, then merge this
build's summary into ``ROOT/summary.json`` (``pipelines/engine/root.py``) and print it. What
differs between the kinds (stages, sink, provenance, summary, texts) is a ``BuildKind``.
"""

from __future__ import annotations

import json
import posixpath
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import fsspec
import pyarrow.parquet as pq
import yaml

from pipelines.config import BuildConfig, output_fingerprint
from pipelines.dataset.layout import SUMMARY_FILE
from pipelines.engine import runner
from pipelines.engine.resume import BuildState
from pipelines.engine.root import config_file, merge_summary
from pipelines.engine.stage import Stage
from sama.config import to_dict


@dataclass(frozen=True)
class BuildKind:
    """What one kind of build plugs into ``run_build``.

    ``name`` is the kind (``clips``/``pairs``: its state, config file and summary entry) and the
    sink's count key of written rows; ``source`` lists the inputs (its rows carry ``id_column``),
    ``make_stages`` the worker stages, ``sink`` writes the shards (``sink(cfg, state, prov,
    written_ids)``, with ``counts``, ``process`` and ``close``). ``label`` starts the printed
    lines (``sama build``), ``noun`` names the inputs in them; ``bar_desc``/``bar_unit`` the
    progress bar."""

    name: str
    source: type[Stage]
    sink: type[Stage]
    id_column: str
    make_stages: Callable[[BuildConfig], list[Stage]]
    provenance: Callable[[BuildConfig, dict], dict]
    check_same_models: Callable[[BuildState, dict, str], None]
    summarize: Callable[[BuildConfig, BuildState, list[dict], dict], dict]
    format_summary: Callable[[dict], str]
    label: str
    noun: str
    bar_desc: str
    bar_unit: str


def run_build(cfg: BuildConfig, kind: BuildKind) -> dict:
    """Run the ``kind`` build described by ``cfg``; returns its summary (merged into
    ``summary.json`` with the root's other kinds)."""
    t0, started = time.monotonic(), datetime.now(UTC).isoformat(timespec="seconds")
    fs, root = fsspec.core.url_to_fs(cfg.output.uri, **cfg.output.storage_options)
    state = BuildState(fs, root, kind.name)
    resumed = state.prepare(output_fingerprint(cfg), cfg.output.if_exists, cfg.output.uri)
    inputs = kind.source(cfg).process([])
    done = state.done_inputs()
    todo = [r for r in inputs if r[kind.id_column] not in done]
    stages = kind.make_stages(cfg)
    runner.plan(stages, kind.source, kind.sink)  # a wiring error fails here, before Ray starts
    config_yaml = yaml.safe_dump(to_dict(cfg), sort_keys=False)
    _write(fs, posixpath.join(root, config_file(kind.name)), config_yaml)
    print(
        f"{kind.label}: {len(inputs)} {kind.noun}, {len(inputs) - len(todo)} already built, "
        f"{len(todo)} to do -> {cfg.output.uri}",
        file=sys.stderr,
        flush=True,
    )
    counts = {kind.name: 0, "errors": 0, "skipped_rows": 0}
    if todo:  # nothing to do: no Ray, no models
        with runner.ray_session(cfg):
            prov = kind.provenance(cfg, runner.describe(cfg, stages))
            kind.check_same_models(state, prov, cfg.output.uri)
            written = state.existing_ids({r[kind.id_column] for r in todo})
            sink = kind.sink(cfg, state, prov, written)
            _run_with_progress(cfg, kind, stages, todo, sink)
        counts = sink.counts
    stats = {
        **counts,
        "resumed": resumed,
        "processed_inputs": len(todo),
        "skipped_inputs": len(inputs) - len(todo),
        "started_at": started,
        "wall_s": round(time.monotonic() - t0, 3),
    }
    summary = kind.summarize(cfg, state, inputs, stats)
    merged = merge_summary(_read_json(fs, posixpath.join(root, SUMMARY_FILE)), summary, kind.name)
    _write(fs, posixpath.join(root, SUMMARY_FILE), json.dumps(merged, indent=1) + "\n")
    print(kind.format_summary(summary), file=sys.stderr, flush=True)
    return summary


def _run_with_progress(
    cfg: BuildConfig, kind: BuildKind, stages: list[Stage], todo: list[dict], sink: Any
) -> None:
    from tqdm import tqdm

    bar = tqdm(total=len(todo), desc=kind.bar_desc, unit=kind.bar_unit, file=sys.stderr,
               mininterval=1.0, dynamic_ncols=True)  # fmt: skip

    def consume(batch: list[dict]) -> None:
        bar.update(len(sink.process(batch)))
        shown = {kind.name: sink.counts[kind.name], "errors": sink.counts["errors"]}
        bar.set_postfix(shown, refresh=False)

    try:
        runner.run(cfg, stages, todo, consume, source=kind.source, writer=kind.sink)
    finally:  # even when the run fails: what arrived complete is written and marked done
        sink.close()
        bar.close()


def _read_json(fs: Any, path: str) -> dict | None:
    if not fs.exists(path):
        return None
    with fs.open(path, "rb") as f:
        return json.loads(f.read())


def _write(fs: Any, path: str, text: str) -> None:
    from pipelines.engine.writer import open_atomic

    with open_atomic(fs, path) as f:
        f.write(text.encode())


# ---- summary pieces both kinds share -------------------------------------------------------
def read_error_rows(state: BuildState) -> list[dict]:
    """``item_id``, ``stage`` and ``kind`` of every error row this build kind owns under ROOT."""
    rows: list[dict] = []
    for p in state.shard_paths("errors"):
        with state.fs.open(p, "rb") as f:
            rows += pq.read_table(f, columns=["item_id", "stage", "kind"]).to_pylist()
    return rows


def error_counts(errs: list[dict]) -> dict:
    """``errors_by_kind`` and ``errors_by_stage`` of a summary."""
    return {
        "errors_by_kind": dict(sorted(Counter(e["kind"] for e in errs).items())),
        "errors_by_stage": dict(sorted(Counter(e["stage"] for e in errs).items())),
    }


def run_fields(cfg: BuildConfig) -> dict:
    """When and where this run finished (the tail of ``summary["run"]``)."""
    return {
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "executor": cfg.engine.executor,
        "ray_address": cfg.engine.ray_address or "local",
    }
