"""Object stores for real: ``s3://`` input and output against a local S3-compatible server.

``moto_server`` (moto[server]) runs as its own process on 127.0.0.1 and is reached over HTTP
through s3fs, as a real bucket would be: a build reads videos and a manifest from one bucket and
writes shards to another, is killed (SIGKILL) mid-build and resumed, and the result equals a
local build of the same videos; ``sama validate`` and the trainer's loader read it on s3://; the
credentials given in ``storage_options`` appear in no object the build wrote; a second build is
refused by the lease (a conditional PUT).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines.build import build
from pipelines.dataset.validate import validate
from tests.pipelines.helpers import assert_close_bf16, demo_config, local_ray, tiny_models

ROOT = Path(__file__).resolve().parents[2]
SECRET = "STORAGE-OPTIONS-SECRET-4242"
KEY = "AKIASTORAGEOPTIONS99"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    """A moto S3 server process; the environment points boto at it (for validate and the
    loader), the build gets its credentials through storage_options."""
    port = _free_port()
    server = str(Path(sys.executable).with_name("moto_server"))
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    proc = subprocess.Popen([server, "-H", "127.0.0.1", "-p", str(port)], stdout=log.open("w"),
                            stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
    endpoint = f"http://127.0.0.1:{port}"
    env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
           "AWS_ENDPOINT_URL": endpoint, "AWS_DEFAULT_REGION": "us-east-1"}  # fmt: skip
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
                time.sleep(0.1)
        import s3fs

        fs = s3fs.S3FileSystem()
        for bucket in ("media", "data"):
            fs.call_s3("create_bucket", Bucket=bucket)
        opts = f"{{key: {KEY}, secret: {SECRET}, client_kwargs: {{endpoint_url: '{endpoint}'}}}}"
        yield {"fs": fs, "endpoint": endpoint, "opts": opts}
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture(scope="module")
def ray_address(s3):  # after the environment points at the server: workers inherit it
    with local_ray() as address:
        yield address


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> Path:
    return tiny_models(tmp_path_factory)


def _upload(s3, sample_set) -> str:
    """The good sample videos (twice each, under two names) and a bad one, with a manifest of
    relative paths."""
    fs, root = s3["fs"], Path(sample_set["root"])
    rows = []
    for name in ("landscape", "portrait", "square", "av1"):
        path = Path(sample_set["videos"][name]["path"])
        fs.put_file(str(path), f"media/set/videos/{path.name}")
        rows.append({"id": name, "video": f"videos/{path.name}", "caption": f"{name} video"})
        rows.append({"id": f"{name}2", "video": f"videos/{path.name}", "caption": f"{name} again"})
    fs.pipe_file("media/set/videos/empty.mp4", b"")
    rows.append({"id": "empty", "video": "videos/empty.mp4", "caption": "nothing"})
    fs.pipe_file("media/set/manifest.jsonl", "".join(json.dumps(r) + "\n" for r in rows).encode())
    local = root / "s3_reference.jsonl"  # the same rows, for the local reference build
    local.write_text("".join(json.dumps({**r, "video": str(root / r["video"]).replace(
        "videos/empty.mp4", "bad/zero_byte.mp4")}) + "\n" for r in rows))  # fmt: skip
    return str(local)


def _rows(fs, root: str) -> tuple[dict, dict]:
    def table(kind):
        paths = sorted(p for p in fs.ls(f"{root}/{kind}", detail=False) if p.endswith(".parquet"))
        return pa.concat_tables([pq.read_table(fs.open(p, "rb")) for p in paths])

    rows = table("clips").to_pylist()
    clips = {r["clip_id"]: r for r in rows}
    assert len(clips) == len(rows), "a clip written twice (an orphaned shard kept?)"
    errors = {r["item_id"]: r["kind"] for r in table("errors").to_pylist()}
    return clips, errors


def test_build_kill_resume_validate_and_train_on_s3(s3, ray_address, models, sample_set, tmp_path):
    local_manifest = _upload(s3, sample_set)
    fs = s3["fs"]
    io = [f"input.storage_options={s3['opts']}", f"output.storage_options={s3['opts']}"]
    out = "s3://data/ds"
    cmd = [sys.executable, "-m", "sama.cli", "build", str(ROOT / "configs/build_demo.yaml"),
           f"models_dir={models}", "input.uri=s3://media/set/manifest.jsonl", f"output.uri={out}",
           *io, "output.shard_size_mb=0.000001", "--ray-address", ray_address]  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=ROOT, start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)  # fmt: skip
    deadline = time.monotonic() + 180
    while not fs.glob("data/ds/_state/clips/sidecars/*.json"):
        assert proc.poll() is None, proc.stderr.read().decode()[-3000:]
        assert time.monotonic() < deadline, "no shard written within 180 s"
        time.sleep(0.1)
        fs.invalidate_cache()
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    # The write tasks run in the cluster's workers, so those in flight may still finish after
    # the driver died (on 9 small inputs that can be all of them). Make one input's write the
    # one that was killed between its shards and its sidecar: its shards stay, orphaned.
    fs.invalidate_cache()
    assert not fs.exists(f"{out}/summary.json"), "the build finished before it was killed"
    sidecars = [json.loads(fs.cat_file(p)) | {"path": p}
                for p in fs.glob("data/ds/_state/clips/sidecars/*.json")]  # fmt: skip
    victim = sidecars[0]["inputs"]["ids"][0]
    for sc in sidecars:
        if victim in sc["inputs"]["ids"]:
            fs.rm(sc["path"])
    cfg = demo_config(models, "s3://media/set/manifest.jsonl", out, *io)
    summary = build(cfg)  # resumes (the dead driver's lease is taken over: same host, pid gone)
    assert summary["run"]["resumed"] and summary["num_inputs_unaccounted"] == 0
    assert summary["run"]["processed_inputs"] >= 1  # the victim at least is built again

    ref = tmp_path / "ref"
    build(demo_config(models, local_manifest, str(ref), "engine.executor=local",
                      f"input.allowed_roots=[{sample_set['root']}]"))  # fmt: skip
    import fsspec

    clips, errors = _rows(fs, "data/ds")
    ref_clips, ref_errors = _rows(fsspec.filesystem("file"), str(ref))
    assert sorted(clips) == sorted(ref_clips) and errors == ref_errors == {"empty": "zero_byte"}
    for cid, row in clips.items():  # the same pixels through S3 as from disk
        assert row["source_uri"].startswith("s3://media/set/videos/")
        assert_close_bf16(row, ref_clips[cid], "latents", cid)

    assert validate(out).ok
    fs.invalidate_cache()
    for path in fs.find("data/ds"):  # every object the build wrote: no credential in any
        blob = fs.cat_file(path)
        assert SECRET.encode() not in blob and KEY.encode() not in blob, path

    from trainer.data import DataConfig, SourceConfig, StreamingLoader

    loader = StreamingLoader(DataConfig(sources=[SourceConfig(out, "clips")], image_batch_size=2,
                                        video_batch_size=2, num_workers=0, seed=1))  # fmt: skip
    import itertools

    seen = [i for b in itertools.islice(loader, loader.batches_in_epoch()) for i in b["sample_id"]]
    assert sorted(seen) == sorted(clips)


def test_a_second_build_into_a_leased_s3_root_is_refused(s3, models):
    from pipelines.engine.lease import LeaseHeld, hold

    io = [f"input.storage_options={s3['opts']}", f"output.storage_options={s3['opts']}"]
    cfg = demo_config(models, "s3://media/set/manifest.jsonl", "s3://data/leased", *io,
                      "engine.executor=local")  # fmt: skip
    fs = s3["fs"]
    with (hold(fs, "data/leased", "pairs", 60, "s3://data/leased", take_over=False),
          pytest.raises(LeaseHeld, match="being written by a pairs build")):  # fmt: skip
        build(cfg)
    assert not fs.exists("data/leased/_state/lease.json")
