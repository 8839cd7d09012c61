"""``engine/writer.py``: one bundle of rows -> data shard(s), error shard, sidecar (no Ray).

The bundles are clip rows in the clip recipe's in-flight schema (``bundles.py``).
"""

from __future__ import annotations

import json
from pathlib import Path

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from datasets_spec import CLIPS, ERRORS_V1
from datasets_spec.provenance import read_provenance
from pipelines.clips.recipe import RECORD
from pipelines.engine import writer
from pipelines.engine.writer import open_atomic, row_bytes, write_bundle
from tests.pipelines.engine.bundles import bundle, clip, error, settings


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def _mixed() -> list[dict]:
    """Video a: 3 clips (the last announces 3); b: a probe error; c: 1 clip + a make_clips error
    standing for 2 more clips (every row announces 3)."""
    return [
        clip("a", 0), clip("a", 1), clip("a", 2, announce=3),
        error("b", "probe", "zero_byte"),
        clip("c", 0, announce=3), error("c", "make_clips", "truncated", weight=2, announce=3),
    ]  # fmt: skip


# ---- shards and sidecar ---------------------------------------------------------------------


def test_write_bundle_writes_a_data_shard_an_error_shard_and_a_sidecar(tmp_path):
    sc = write_bundle(bundle(_mixed()), RECORD, settings(tmp_path))
    digest = sc["name"]
    assert len(digest) == 20
    assert _files(tmp_path) == [
        f"_state/clips/sidecars/{digest}.json",
        f"clips/part-clips-{digest}.parquet",
        f"errors/part-clips-{digest}.parquet",
    ]
    on_disk = json.loads((tmp_path / f"_state/clips/sidecars/{digest}.json").read_text())
    assert on_disk == sc
    assert sc["data"] == [f"clips/part-clips-{digest}.parquet"]
    assert sc["errors"] == f"errors/part-clips-{digest}.parquet"
    assert (sc["rows"], sc["error_rows"], sc["skipped_rows"], sc["run"]) == (4, 2, 0, "run1")
    assert sc["errors_by_kind"] == {"zero_byte": 1, "truncated": 1}
    assert sc["errors_by_stage"] == {"probe": 1, "make_clips": 1}
    assert sc["bytes"] == sum(p.stat().st_size for p in tmp_path.rglob("*.parquet"))
    assert sc["inputs"] == {
        "ids": ["a", "b", "c"],
        "data_rows": [3, 0, 1],
        "error_rows": [0, 1, 2],  # weights: c's error row stands for 2 clips
        "announced": [3, 1, 3],
        "seconds": [10.0, 10.0, 10.0],  # once per input, from its announcing row
    }


def test_names_are_a_content_hash_and_a_rewrite_makes_no_duplicates(tmp_path):
    rows = _mixed()
    first = write_bundle(bundle(rows), RECORD, settings(tmp_path))
    files = _files(tmp_path)
    again = write_bundle(bundle(list(reversed(rows))), RECORD, settings(tmp_path, run_id="r2"))
    assert again["name"] == first["name"] and _files(tmp_path) == files  # a retried task
    other = write_bundle(bundle(rows[:3]), RECORD, settings(tmp_path))
    assert other["name"] != first["name"] and other["errors"] is None
    assert len(_files(tmp_path)) == len(files) + 2  # its data shard and sidecar


def test_shards_validate_against_their_spec_and_carry_provenance(tmp_path):
    sc = write_bundle(bundle(_mixed()), RECORD, settings(tmp_path))
    data = pq.read_table(tmp_path / sc["data"][0])
    CLIPS.validate(data)
    assert data.column_names == CLIPS.column_names  # no in-flight column is stored
    prov = read_provenance(data.schema)
    assert prov["spec"] == CLIPS.id == "clips/v2" and prov["black_latent"] == [0.0] * 16
    errors = pq.read_table(tmp_path / sc["errors"])
    ERRORS_V1.validate(errors)
    assert read_provenance(errors.schema)["spec"] == "errors/v1"
    assert read_provenance(errors.schema)["build_config"] == {"seed": 0}


def test_error_ids_and_input_uris(tmp_path):
    rows = [error("b", "probe", "zero_byte"),
            error("c", "encode_latents", "encode_error", clip_id="c-s001-c00")]  # fmt: skip
    rows[0]["source_uri"] = None  # no uri at all: an empty string, never a null
    sc = write_bundle(bundle(rows), RECORD, settings(tmp_path))
    got = pq.read_table(tmp_path / sc["errors"]).to_pylist()
    assert [(r["error_id"], r["input_uri"], r["item_id"], r["record_kind"], r["stage"],
             r["kind"], r["message"]) for r in got] == [
        ("b:probe", "", "b", "clips", "probe", "zero_byte", "b failed in probe"),
        ("c-s001-c00:encode_latents", "/data/c.mp4", "c", "clips", "encode_latents",
         "encode_error", "c failed in encode_latents"),
    ]  # fmt: skip
    assert sc["data"] == [] and sc["rows"] == 0


# ---- row groups -----------------------------------------------------------------------------


def _row_groups(path: Path) -> list[list[tuple[int, int]]]:
    f = pq.ParquetFile(path)
    out = []
    for g in range(f.num_row_groups):
        t = f.read_row_group(g, columns=["bucket_width", "bucket_height"]).to_pydict()
        out.append(list(zip(t["bucket_width"], t["bucket_height"], strict=True)))
    return out


def test_row_groups_hold_one_bucket_capped_by_rows(tmp_path):
    buckets = [(48, 32), (32, 48)]
    rows = [clip("v", i, buckets[i % 2]) for i in range(7)]
    sc = write_bundle(bundle(rows), RECORD, settings(tmp_path, row_group_rows=2))
    (path,) = sc["data"]
    groups = _row_groups(tmp_path / path)
    assert [len(g) for g in groups] == [2, 1, 2, 2]  # 3 of one bucket, 4 of the other
    assert all(len(set(g)) == 1 for g in groups)
    ids = pq.read_table(tmp_path / path, columns=["clip_id"]).column(0).to_pylist()
    assert sorted(ids) == sorted(r["clip_id"] for r in rows)


def test_row_groups_are_capped_by_bytes(tmp_path):
    rows = [clip("v", i) for i in range(6)]  # one bucket
    per_row = row_bytes(bundle(rows[:1]))[0]
    ws = settings(tmp_path, row_group_rows=100, row_group_bytes=int(per_row * 2.5))
    sc = write_bundle(bundle(rows), RECORD, ws)
    groups = _row_groups(tmp_path / sc["data"][0])
    assert [len(g) for g in groups] == [2, 2, 2]
    one = write_bundle(bundle(rows[:2]), RECORD, settings(tmp_path / "o", row_group_bytes=10))
    assert [len(g) for g in _row_groups(tmp_path / "o" / one["data"][0])] == [1, 1]


def test_a_bundle_far_over_the_shard_size_is_split_into_several_shards(tmp_path):
    rows = [clip("v", i, [(48, 32), (32, 48)][i % 2]) for i in range(8)]
    per_row = row_bytes(bundle(rows[:1]))[0]
    ws = settings(tmp_path, shard_bytes=per_row * 3, row_group_rows=2)
    sc = write_bundle(bundle(rows), RECORD, ws)
    assert len(sc["data"]) >= 2
    assert all(p.endswith(f"-{k}.parquet") for k, p in enumerate(sc["data"]))
    total = sum(pq.ParquetFile(tmp_path / p).metadata.num_rows for p in sc["data"])
    assert total == sc["rows"] == 8


# ---- resume: the skip set ---------------------------------------------------------------------


def test_skip_drops_the_rows_an_earlier_run_wrote(tmp_path):
    rows = _mixed()
    skip = pa.array(["a-s000-c00", "a-s001-c00", "b:probe", "not-in-bundle"])
    sc = write_bundle(bundle(rows), RECORD, settings(tmp_path), skip)
    assert (sc["rows"], sc["error_rows"], sc["skipped_rows"]) == (2, 1, 3)
    ids = pq.read_table(tmp_path / sc["data"][0], columns=["clip_id"]).column(0).to_pylist()
    assert sorted(ids) == ["a-s002-c00", "c-s000-c00"]
    assert pq.read_table(tmp_path / sc["errors"]).column("error_id").to_pylist() == ["c:make_clips"]
    assert sc["inputs"]["ids"] == ["a", "c"]  # only what this bundle wrote is counted
    assert sc["inputs"]["data_rows"] == [1, 1] and sc["inputs"]["announced"] == [3, 3]
    everything = pa.array([*(r["clip_id"] for r in rows[:3]), "b:probe", "c-s000-c00",
                           "c:make_clips"])  # fmt: skip
    empty = write_bundle(bundle(rows), RECORD, settings(tmp_path / "e"), everything)
    assert empty["skipped_rows"] == 6 and empty["inputs"]["ids"] == []
    assert not (tmp_path / "e").exists() or _files(tmp_path / "e") == []  # no empty shards


# ---- open_atomic ----------------------------------------------------------------------------


def test_open_atomic_leaves_nothing_on_failure_locally(tmp_path):
    fs = fsspec.filesystem("file")
    path = str(tmp_path / "d" / "x.parquet")
    with pytest.raises(RuntimeError), open_atomic(fs, path) as f:
        f.write(b"half a shard")
        raise RuntimeError("killed mid-write")
    assert _files(tmp_path) == []  # neither the file nor a .tmp- file
    with open_atomic(fs, path) as f:
        f.write(b"whole")
    assert Path(path).read_bytes() == b"whole" and _files(tmp_path) == ["d/x.parquet"]


def test_open_atomic_writes_directly_on_an_object_store(monkeypatch):
    """memory:// stands for an object store: one PUT under the final name, no temp + move
    (on S3 a move is a copy + delete of every shard); a failure leaves no object."""
    fs = fsspec.filesystem("memory")
    assert writer.is_object_store(fs) and not writer.is_local(fs)
    opened = []
    real_open = fs.open

    def spy(path, mode="rb", **kw):
        opened.append((path, mode))
        return real_open(path, mode, **kw)

    def no_move(*a, **kw):
        raise AssertionError("open_atomic moved a file on an object store")

    monkeypatch.setattr(fs, "open", spy)
    monkeypatch.setattr(fs, "mv", no_move)
    with open_atomic(fs, "/atomic_test/part.parquet") as f:
        f.write(b"shard bytes")
    assert opened == [("/atomic_test/part.parquet", "wb")]
    assert fs.cat_file("/atomic_test/part.parquet") == b"shard bytes"
    with pytest.raises(RuntimeError), open_atomic(fs, "/atomic_test/broken.parquet") as f:
        f.write(b"half")
        raise RuntimeError("failed mid-write")
    assert not fs.exists("/atomic_test/broken.parquet")
    assert [p for p in fs.find("/atomic_test") if "tmp" in p] == []
    fs.rm("/atomic_test", recursive=True)


def test_write_bundle_on_memory_fs(tmp_path):
    fs = fsspec.filesystem("memory")
    sc = write_bundle(bundle(_mixed()), RECORD, settings("memory://writer_test"))
    assert fs.exists(f"/writer_test/{sc['data'][0]}")
    assert fs.exists(f"/writer_test/_state/clips/sidecars/{sc['name']}.json")
    with fs.open(f"/writer_test/{sc['data'][0]}", "rb") as f:
        CLIPS.validate(pq.read_table(f))
    fs.rm("/writer_test", recursive=True)


@pytest.mark.parametrize("size", [10, 12 * 2**20])  # a one-shot PUT, a multipart upload
def test_open_atomic_on_s3_leaves_no_object_on_failure(size, monkeypatch):
    """Against a local S3-compatible server (moto, 127.0.0.1) through s3fs: a write that fails
    midway leaves no object (closing it would have uploaded the part written so far)."""
    s3fs = pytest.importorskip("s3fs")
    moto_server = pytest.importorskip("moto.server")
    for k, v in {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
                 "AWS_DEFAULT_REGION": "us-east-1"}.items():  # fmt: skip
        monkeypatch.setenv(k, v)
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        fs = s3fs.S3FileSystem(client_kwargs={"endpoint_url": f"http://{host}:{port}"},
                               key="test", secret="test", skip_instance_cache=True)  # fmt: skip
        bucket = f"atomic-{size}"  # moto's state is per process: a bucket per test
        fs.mkdir(bucket)
        with pytest.raises(RuntimeError), open_atomic(fs, f"{bucket}/broken.parquet") as f:
            f.write(b"x" * size)
            raise RuntimeError("failed mid-write")
        with open_atomic(fs, f"{bucket}/whole.parquet") as f:
            f.write(b"y" * size)
        fs.invalidate_cache()
        assert fs.ls(bucket, detail=False) == [f"{bucket}/whole.parquet"]
        assert fs.size(f"{bucket}/whole.parquet") == size
    finally:
        server.stop()
