"""``sama build`` on a real multi-node local Ray cluster: ``ray start --head`` plus a second
``ray start --address`` node (separate raylets, object stores and worker pools).

- With 1 CPU per node the demo-sized build finishes with the rows of a local build: the model
  actors are packed on one node and the other keeps a whole CPU for the decode and write tasks
  (without per-node placement this build waited forever).
- Killing the worker node (its raylet and workers, SIGKILL) mid-build: the build, or its re-run,
  ends with exactly the rows of an uninterrupted build.
The cluster is ``sama.testing.ray_cluster.local_cluster`` (token authentication on).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines.build import build
from sama.testing.ray_cluster import RAY_ENV as ENV
from sama.testing.ray_cluster import local_cluster
from tests.pipelines.helpers import assert_close_bf16, demo_config, tiny_models

ROOT = Path(__file__).resolve().parents[2]
@pytest.fixture(scope="module")
def models(tmp_path_factory) -> Path:
    return tiny_models(tmp_path_factory)


@pytest.fixture(scope="module")
def reference(models, sample_set, tmp_path_factory) -> Path:
    """The sample set built in this process (no Ray): the rows every cluster build must give."""
    out = tmp_path_factory.mktemp("ref") / "ds"
    build(demo_config(models, sample_set["manifest"], str(out), "engine.executor=local"))
    return out


def _rows(root: Path) -> tuple[dict, dict]:
    def table(kind):
        return pa.concat_tables(
            [pq.read_table(p) for p in sorted((root / kind).glob("part-*.parquet"))]
        )

    clips = {r["clip_id"]: r for r in table("clips").to_pylist()}
    errors = {r["error_id"]: (r["kind"], r["stage"]) for r in table("errors").to_pylist()}
    return clips, errors


def _assert_same_rows(root: Path, ref: Path) -> None:
    clips, errors = _rows(root)
    ref_clips, ref_errors = _rows(ref)
    assert errors == ref_errors and sorted(clips) == sorted(ref_clips)
    for cid, row in clips.items():
        for col in ("latents", "anchor_tokens", "text_embeds"):
            assert_close_bf16(row, ref_clips[cid], col, cid)


def _cmd(models, sample_set, out, address, *extra) -> list[str]:
    return [sys.executable, "-m", "sama.cli", "build", str(ROOT / "configs/build_demo.yaml"),
            f"models_dir={models}", f"input.uri={sample_set['manifest']}", f"output.uri={out}",
            "--ray-address", address, *extra]  # fmt: skip


def test_one_cpu_per_node_places_actors_and_tasks_and_finishes(
    models, sample_set, reference, tmp_path
):
    out = tmp_path / "out"
    with local_cluster(tmp_path, nodes=2, cpus=1) as (address, _):
        done = subprocess.run(_cmd(models, sample_set, out, address), cwd=ROOT, env=ENV,
                              capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    _assert_same_rows(out, reference)


def test_one_node_whose_cpu_the_actors_share_still_reads_its_inputs(
    models, sample_set, reference, tmp_path
):
    """Actors at 0.1 CPU each on a 1-CPU node leave 0.7: the tasks (0.4) fit, and so must the
    read of the inputs table (Ray's default of a whole CPU waited forever)."""
    out = tmp_path / "out"
    fractions = [*(f"engine.{s}.num_cpus=0.4" for s in ("probe", "clips", "caption", "write")),
                 *(f"engine.{s}.num_cpus=0.1" for s in ("latents", "anchors", "text"))]  # fmt: skip
    with local_cluster(tmp_path, nodes=1, cpus=1) as (address, _):
        done = subprocess.run(_cmd(models, sample_set, out, address, *fractions), cwd=ROOT,
                              env=ENV, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    _assert_same_rows(out, reference)


def test_killing_the_worker_node_mid_build_loses_no_row(models, sample_set, reference, tmp_path):
    out = tmp_path / "out"
    small = "output.shard_size_mb=0.000001"  # a shard per row: state to resume from
    with local_cluster(tmp_path, nodes=2, cpus=2) as (address, (_, worker)):
        proc = subprocess.Popen(_cmd(models, sample_set, out, address, small), cwd=ROOT, env=ENV,
                                start_new_session=True, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE)  # fmt: skip
        sidecars = out / "_state" / "clips" / "sidecars"
        deadline = time.monotonic() + 180
        while not (sidecars.exists() and any(sidecars.glob("[!.]*.json"))):
            assert proc.poll() is None, proc.stderr.read().decode()[-3000:]
            assert time.monotonic() < deadline, "no shard written within 180 s"
            time.sleep(0.05)
        os.killpg(worker.pid, signal.SIGKILL)  # the worker node's raylet and all its workers
        worker.wait()
        try:
            first = proc.wait(timeout=240)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            first = proc.wait()
        if first != 0:  # the build could not finish without the node: run it again
            done = subprocess.run(_cmd(models, sample_set, out, address, small), cwd=ROOT,
                                  env=ENV, capture_output=True, text=True, timeout=300)  # fmt: skip
            assert done.returncode == 0, done.stderr[-3000:]
    print(f"first run after the node died: exit {first}")
    _assert_same_rows(out, reference)
