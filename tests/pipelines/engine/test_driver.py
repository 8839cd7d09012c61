"""``engine/driver.py`` end to end in this process (``engine.executor=local``, no Ray): a clip
build over a video with three shots and a broken file; a re-run does nothing; a lost shard is
made again with exactly the rows it held; the error-rate limit; the lease.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from pipelines.build import build
from pipelines.engine.driver import BuildFailed
from pipelines.engine.lease import Lease, LeaseHeld
from tests.pipelines.helpers import demo_config, tiny_models


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> Path:
    return tiny_models(tmp_path_factory)


@pytest.fixture(scope="module")
def manifest(shot_video, tmp_path_factory) -> str:
    root = tmp_path_factory.mktemp("driver_inputs")
    shutil.copy(shot_video["path"], root / "v.mp4")
    (root / "empty.mp4").write_bytes(b"")
    rows = [{"id": "v", "video": "v.mp4", "caption": "a square moves"},
            {"id": "e", "video": "empty.mp4", "caption": "nothing"}]  # fmt: skip
    path = root / "m.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def _cfg(models, manifest, out, *overrides):
    return demo_config(models, manifest, str(out), "engine.executor=local",
                       "output.shard_size_mb=0.05", *overrides)  # fmt: skip


def _rows(root: Path) -> tuple[list[str], list[str]]:
    def ids(folder: str, column: str) -> list[str]:
        return sorted(v for p in (root / folder).glob("part-*.parquet")
                      for v in pq.read_table(p, columns=[column]).column(0).to_pylist())  # fmt: skip

    return ids("clips", "clip_id"), ids("errors", "error_id")


def test_a_local_build_resumes_to_exactly_the_rows_of_an_uninterrupted_one(
    models, manifest, tmp_path
):
    out = tmp_path / "ds"
    s = build(_cfg(models, manifest, out))
    clips, errors = _rows(out)
    assert clips == ["v-s000-c00", "v-s001-c00", "v-s002-c00"] and errors == ["e:probe"]
    assert (s["num_inputs"], s["inputs_done"], s["inputs_failed"], s["clips"], s["errors"]) == (
        2, 2, 1, 3, 1
    )  # fmt: skip
    assert s["num_inputs_unaccounted"] == 0 and s["errors_by_kind"] == {"zero_byte": 1}
    assert s["hours_processed"] > 0 and s["run"]["executor"] == "local"
    assert not (out / "_state" / "lease.json").exists()  # released
    assert list((out / "_state" / "clips" / "sidecars").glob("*.json")) == []  # compacted
    again = build(_cfg(models, manifest, out))
    assert again["run"]["processed_inputs"] == 0 and _rows(out) == (clips, errors)
    shards = sorted((out / "clips").glob("part-*.parquet"))
    assert len(shards) == 3  # a shard a clip at this shard size
    shards[1].unlink()  # lost: its sidecar is dropped, video v is made again
    redo = build(_cfg(models, manifest, out))
    assert redo["run"]["processed_inputs"] == 1 and redo["run"]["skipped_rows"] == 2
    assert redo["run"]["clips"] == 1 and _rows(out) == (clips, errors)
    assert redo["inputs_done"] == 2 and redo["num_inputs_unaccounted"] == 0


def test_max_error_rate_fails_the_build_after_writing_it(models, manifest, tmp_path):
    out = tmp_path / "ds"
    with pytest.raises(BuildFailed, match=r"1 of 2 inputs failed \(50.0%\), more than "
                                          r"engine.max_error_rate=0.4"):  # fmt: skip
        build(_cfg(models, manifest, out, "engine.max_error_rate=0.4", "text.enabled=false"))
    summary = json.loads((out / "summary.json").read_text())
    assert summary["inputs_failed"] == 1 and summary["clips"] == 3


def test_a_second_build_into_a_leased_root_is_refused(models, manifest, tmp_path):
    import fsspec

    out = tmp_path / "ds"
    holder = Lease(fsspec.filesystem("file"), str(out), "pairs", 120.0, str(out))
    holder.acquire()
    try:
        with pytest.raises(LeaseHeld, match="is being written by a pairs build"):
            build(_cfg(models, manifest, out, "text.enabled=false"))
    finally:
        holder.release()
    assert not (out / "clips").exists()
