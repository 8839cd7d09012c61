"""``sama build`` end to end on Ray (one local Ray session shared by the module).

Generated videos with known cuts (H.264, MPEG-4, AV1) plus every kind of bad input: clip
boundaries fall inside the true shots, shards validate against ``clips/v1`` and load with
``datasets``, every bad input is an error row of the right kind; a re-run skips finished inputs;
a build killed with SIGKILL and resumed has the same rows as an uninterrupted one; remote inputs
(HTTP through Ray, a stalled server, a server without Range support, ``memory://`` in-process)
work or become error rows within the budget; the lease, redaction, confinement of manifest
entries, ``internal_error`` rows and ``engine.max_error_rate`` behave as documented.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from datasets_spec import CLIPS, ERRORS_V1
from datasets_spec.provenance import REQUIRED, read_provenance
from pipelines.build import build, build_main
from pipelines.dataset.validate import validate
from pipelines.engine.lease import LeaseHeld
from pipelines.engine.resume import sidecar_tables
from sama.errors import ConfigError
from sama.media import write_shot_video
from tests.pipelines.helpers import demo_config, tiny_models

ROOT = Path(__file__).resolve().parents[2]
EXPECTED_ERRORS = {
    "bad_zero_byte": "zero_byte",
    "bad_not_a_video": "not_a_video",
    "bad_truncated": "truncated",
    "bad_truncated_faststart": "salvaged",  # its tail is cut off: the frames before it are cut
    "bad_missing": "not_found",
    "too_short": "too_short",
    "no_long_shot": "no_usable_shot",
}


@pytest.fixture(scope="module")
def ray_address():
    import ray

    ray.init(
        address="local",  # never join a cluster left running on this machine
        num_cpus=2,
        object_store_memory=200 * 2**20,
        include_dashboard=False,
        logging_level="WARNING",
    )
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> Path:
    return tiny_models(tmp_path_factory)


@pytest.fixture(scope="module")
def corpus(sample_set, tmp_path_factory) -> dict:
    """The sample set (4 good videos incl. AV1, 5 bad files) + a too-short video and one whose
    shots are all shorter than a clip; a manifest of all 11 and the true cuts of each."""
    root = tmp_path_factory.mktemp("corpus")
    rows = [json.loads(line) for line in Path(sample_set["manifest"]).read_text().splitlines()]
    extra = {"too_short": [10], "no_long_shot": [12, 12, 12]}
    truth = dict(sample_set["videos"].items())
    for name, shots in extra.items():
        path = root / f"{name}.mp4"
        cuts = write_shot_video(path, shots, size=(96, 64), seed=9)
        rows.append({"id": name, "video": str(path), "caption": f"{name} video"})
        truth[name] = {"cuts": cuts, "num_frames": sum(shots), "path": str(path)}
    manifest = root / "manifest.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    # the manifest names videos in two folders: both are allowed roots
    allowed = f"input.allowed_roots=[{root},{sample_set['root']}]"
    return {"manifest": str(manifest), "truth": truth, "ids": [r["id"] for r in rows],
            "allowed": allowed}  # fmt: skip


def _config(models, corpus, out, *overrides):
    return demo_config(models, corpus["manifest"], str(out), corpus["allowed"], *overrides)


@pytest.fixture(scope="module")
def built(ray_address, models, corpus, tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("built") / "ds"
    cfg = _config(models, corpus, out)
    t0 = time.monotonic()
    summary = build(cfg)
    return {"cfg": cfg, "root": out, "summary": summary, "wall_s": time.monotonic() - t0}


def _shards(root: Path, kind: str) -> list[Path]:
    """Shards of ``kind``; not the ``.tmp-*`` files a killed write leaves behind."""
    return sorted(p for p in (root / kind).glob("*.parquet") if not p.name.startswith("."))


def _table(root: Path, kind: str) -> pa.Table:
    paths = _shards(root, kind)
    return pa.concat_tables([pq.read_table(p) for p in paths]) if paths else None


def _rows(root: Path) -> tuple[dict, dict]:
    """clip_id -> the row's content (tensors included), error_id -> (kind, stage)."""
    clips = {r["clip_id"]: r for r in _table(root, "clips").to_pylist()}
    errors = {r["error_id"]: (r["kind"], r["stage"]) for r in _table(root, "errors").to_pylist()}
    return clips, errors


def _same_rows(root: Path, ref_root: Path) -> None:
    clips, errors = _rows(root)
    ref_clips, ref_errors = _rows(ref_root)
    assert errors == ref_errors
    assert sorted(clips) == sorted(ref_clips)  # same set, no duplicates (validate checks ids)
    for cid, row in clips.items():
        for col in ("latents", "anchor_tokens", "text_embeds"):
            assert row[col] == ref_clips[cid][col], (cid, col)


# ---- the end-to-end build ------------------------------------------------------------------


def test_every_input_is_a_clip_or_an_error_of_the_right_kind(built, corpus):
    s = built["summary"]
    assert s["num_inputs"] == 11 and s["inputs_done"] == 11
    assert s["num_inputs_unaccounted"] == 0 and s["inputs_unaccounted"] == []
    listed = pa.concat_tables(
        pq.read_table(p) for p in (built["root"] / "_state/clips/inputs").glob("*.parquet")
    )
    assert listed.column("video_id").to_pylist() == corpus["ids"]  # the declared inputs table
    clips, errors = _rows(built["root"])
    by_item = {eid.split(":")[0]: kind for eid, (kind, _) in errors.items()}
    assert by_item == EXPECTED_ERRORS
    assert {c["video_id"] for c in clips.values()} == {"landscape", "portrait", "square", "av1",
                                                        "bad_truncated_faststart"}  # fmt: skip
    assert s["clips"] == len(clips) == 11 and s["errors"] == 7 and s["inputs_failed"] == 6
    assert s["errors_by_kind"] == {"no_usable_shot": 1, "not_a_video": 1, "not_found": 1,
                                   "salvaged": 1, "too_short": 1, "truncated": 1, "zero_byte": 1}  # fmt: skip
    on_disk = json.loads((built["root"] / "summary.json").read_text())
    assert on_disk["by_kind"]["clips"]["clips"] == 11 and "inputs" not in on_disk
    run = s["run"]
    assert run["hours_processed"] > 0 and run["bytes_written"] > 0 and run["shards"] >= 1
    stages = " ".join(run["stages"])
    for name in ("probe", "cut_clips", "encode_latents", "write_shards"):
        assert name in stages, stages  # per-stage rows and time, from Ray Data's stats


def test_clip_boundaries_fall_inside_true_shots(built, corpus):
    clips, _ = _rows(built["root"])
    for c in clips.values():
        if c["video_id"] == "bad_truncated_faststart":  # salvaged: a good 3-shot file, cut off
            assert c["start_frame"] == 0 and c["num_frames"] == 17
            continue
        t = corpus["truth"][c["video_id"]]
        bounds = [0, *t["cuts"], t["num_frames"]]
        shot = max(i for i, b in enumerate(bounds[:-1]) if b <= c["start_frame"])
        assert c["start_frame"] + c["num_frames"] <= bounds[shot + 1], c["clip_id"]
        assert abs(c["shot_start_frame"] - bounds[shot]) <= 1, c["clip_id"]
        assert c["num_frames"] == 17 and c["latents_shape"][1] == 5
    av1 = sorted(c["clip_id"] for c in clips.values() if c["video_id"] == "av1")
    assert av1 == ["av1-s000-c00", "av1-s001-c00"]  # AV1 decoded through PyAV


def test_shards_validate_load_with_datasets_and_carry_provenance(built):
    from datasets import load_dataset

    report = validate(str(built["root"]))
    assert report.ok, report.format()
    files = [str(p) for p in _shards(built["root"], "clips")]
    ds = load_dataset("parquet", data_files=files, split="train")
    assert ds.num_rows == 11 and set(ds.column_names) == set(CLIPS.column_names)
    assert CLIPS.id == "clips/v2" and ds[0]["preview"]["bytes"][:2] == b"\xff\xd8"  # a JPEG
    for path in files:
        f = pq.ParquetFile(path)
        prov = read_provenance(f.schema_arrow)
        assert set(REQUIRED) <= set(prov) and len(prov["black_latent"]) == 16
        assert prov["latent_norm"]["kind"] == "wan_vae_mean_std"
        assert prov["anchor_policy"]["tokens_per_anchor"] == 65
        for g in range(f.num_row_groups):
            t = f.read_row_group(g, columns=["bucket_width", "bucket_height"])
            assert len(set(zip(*t.to_pydict().values(), strict=True))) == 1
    for path in _shards(built["root"], "errors"):
        ERRORS_V1.validate(pq.read_table(path))
    assert (built["root"] / "build_config.yaml").exists()
    assert not (built["root"] / "_state/lease.json").exists()  # released at the end


def test_rerun_skips_finished_inputs_before_decoding(built):
    before = sorted(p.name for p in built["root"].rglob("*.parquet") if "_state" not in p.parts)
    again = build(built["cfg"])
    assert again["run"]["processed_inputs"] == 0 and again["run"]["skipped_inputs"] == 11
    assert again["clips"] == 11 and again["errors"] == 7
    after = sorted(p.name for p in built["root"].rglob("*.parquet") if "_state" not in p.parts)
    assert after == before


def test_config_that_changes_rows_refuses_the_same_output(built, models, corpus):
    with pytest.raises(ConfigError, match=r"clips\.num_frames: 17 -> 9"):
        build(_config(models, corpus, built["root"], "clips.num_frames=9"))


# ---- kill -9 then resume; the lease ---------------------------------------------------------


def _build_cmd(models, corpus, out, *extra) -> list[str]:
    return [sys.executable, "-m", "sama.cli", "build", str(ROOT / "configs/build_demo.yaml"),
            f"models_dir={models}", f"input.uri={corpus['manifest']}", f"output.uri={out}",
            corpus["allowed"], "engine.strict=true", *extra]  # fmt: skip


def _wait_for_complete_input(out: Path, proc: subprocess.Popen, timeout: float = 120) -> None:
    """Until the finished sidecars (not the `.tmp-*` file of one being written) account for
    every row of at least one input (an input makes several rows: its clips, its dropped-clip
    and salvage rows, so one shard is not yet a finished input)."""
    sidecars = out / "_state" / "clips" / "sidecars"
    deadline = time.monotonic() + timeout
    while True:
        assert proc.poll() is None, proc.stderr.read().decode()[-3000:]
        assert time.monotonic() < deadline, f"no input finished within {timeout} s"
        found = []
        for p in sidecars.glob("[!.]*.json") if sidecars.exists() else ():
            with contextlib.suppress(OSError, ValueError):  # renamed in place: always whole
                found.append(json.loads(p.read_text()))
        if found and len(sidecar_tables(found).done_ids()) >= 1:
            return
        time.sleep(0.05)


def test_kill_mid_build_then_resume_gives_the_same_rows(
    built, ray_address, models, corpus, tmp_path
):
    out = tmp_path / "killed"
    small = ["output.shard_size_mb=0.000001"]  # a shard (and a sidecar) per row
    proc = subprocess.Popen(_build_cmd(models, corpus, out, *small, "--ray-address", ray_address),
                            cwd=ROOT, start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)  # fmt: skip
    _wait_for_complete_input(out, proc)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (out / "summary.json").exists(), "the build finished before it was killed"
    assert (out / "_state/lease.json").exists()  # left by the killed driver: stale (dead pid)
    summary = build(_config(models, corpus, out, *small))
    assert summary["run"]["resumed"] and summary["run"]["skipped_inputs"] >= 1
    assert summary["num_inputs_unaccounted"] == 0
    _same_rows(out, built["root"])
    assert validate(str(out)).ok and not list(out.rglob(".tmp-*"))  # leftovers removed


def test_second_build_into_a_leased_root_is_refused_and_the_first_is_unharmed(
    built, ray_address, models, corpus, tmp_path
):
    out = tmp_path / "leased"
    proc = subprocess.Popen(_build_cmd(models, corpus, out, "--ray-address", ray_address),
                            cwd=ROOT, start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not (out / "_state/lease.json").exists():
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read().decode()
            time.sleep(0.05)
        for extra in ([], ["output.if_exists=overwrite"], ["input.kind=pairs"]):
            with pytest.raises(LeaseHeld, match=r"being written by a clips build on host .* \(pid"):
                build(_config(models, corpus, out, "engine.executor=local", *extra))
        assert proc.wait(timeout=240) == 0, proc.stderr.read().decode()[-3000:]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    _same_rows(out, built["root"])


# ---- remote inputs -------------------------------------------------------------------------


class _RangeHandler(http.server.SimpleHTTPRequestHandler):
    """Static files with HTTP Range support (fsspec's HTTP files read by ranges)."""

    def log_message(self, *args):  # quiet
        pass

    def send_head(self):
        rng = self.headers.get("Range")
        path = Path(self.translate_path(self.path))
        if not rng or not path.is_file():
            return super().send_head()
        data = path.read_bytes()
        start, _, end = rng.removeprefix("bytes=").partition("-")
        start, end = int(start), min(int(end) if end else len(data) - 1, len(data) - 1)
        self.send_response(206)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
        self.send_header("Content-Length", str(end - start + 1))
        self.end_headers()
        import io

        return io.BytesIO(data[start : end + 1])


class _AwkwardHandler(_RangeHandler):
    """``/stall/...``: the headers and the first 2 kB of any GET, then silence forever;
    ``/norange/...``: the whole file for any GET, Range headers ignored (a plain server)."""

    stop = threading.Event()

    def _file(self, prefix: str) -> Path:
        return Path(self.translate_path(self.path.replace(prefix, "/", 1)))

    def do_HEAD(self):  # noqa: N802 - http.server's naming
        if self.path.startswith("/norange/"):  # no size, no ranges: a plain streaming server
            self.send_response(200)
            self.end_headers()
            return None
        if self.path.startswith("/stall/"):
            self.path = self.path.replace("/stall/", "/", 1)
        return super().do_HEAD()

    def do_GET(self):  # noqa: N802
        if self.path.startswith("/stall/"):
            data = self._file("/stall/").read_bytes()
            self.send_response(206 if self.headers.get("Range") else 200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data[:2048])
            self.wfile.flush()
            self.stop.wait()  # never sends the rest
            return
        if self.path.startswith("/norange/"):
            data = self._file("/norange/").read_bytes()
            self.send_response(200)
            self.end_headers()
            self.wfile.write(data)
            self.close_connection = True  # the body ends when the connection does
            return
        super().do_GET()


@pytest.fixture
def http_server(sample_set):
    handler = functools.partial(_AwkwardHandler, directory=str(Path(sample_set["root"])))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    _AwkwardHandler.stop.set()
    server.shutdown()
    _AwkwardHandler.stop.clear()


def _manifest(tmp_path: Path, rows: list[dict]) -> Path:
    manifest = tmp_path / "remote.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return manifest


def test_remote_http_input_through_ray(built, ray_address, models, http_server, tmp_path):
    base = http_server
    manifest = _manifest(tmp_path, [
        {"id": "landscape", "video": f"{base}/videos/landscape.mp4", "caption": "c"},
        {"id": "av1", "video": f"{base}/videos/av1.mkv", "caption": "c"},
        {"id": "gone", "video": f"{base}/videos/gone.mp4", "caption": "c"},
    ])  # fmt: skip
    cfg = demo_config(models, str(manifest), str(tmp_path / "out"), "text.enabled=false",
                      "input.allowed_schemes=[http]", f"input.allowed_roots=[{base}/videos]")  # fmt: skip
    summary = build(cfg)
    assert summary["num_inputs_unaccounted"] == 0 and summary["errors_by_kind"] == {"not_found": 1}
    clips, _ = _rows(tmp_path / "out")
    ref, _ = _rows(built["root"])
    assert sorted(clips) == sorted(c for c in ref if c.split("-")[0] in ("landscape", "av1"))
    for cid, row in clips.items():  # the same pixels through HTTP as from disk
        assert row["source_uri"].startswith("http://")
        assert row["latents"] == ref[cid]["latents"]


def test_a_stalled_server_times_out_and_a_rangeless_one_is_read_whole(
    built, ray_address, models, http_server, tmp_path
):
    """Within the budget: the stalled input is a ``timeout`` row, the good ones have clips and
    the video on a server that ignores Range requests is spooled and cut like the rest."""
    base = http_server
    manifest = _manifest(tmp_path, [
        {"id": "stalled", "video": f"{base}/stall/videos/landscape.mp4", "caption": "c"},
        {"id": "norange", "video": f"{base}/norange/videos/portrait.mp4", "caption": "c"},
        {"id": "square", "video": f"{base}/videos/square.mp4", "caption": "c"},
    ])  # fmt: skip
    cfg = demo_config(models, str(manifest), str(tmp_path / "out"), "text.enabled=false",
                      "input.allowed_schemes=[http]", f"input.allowed_roots=[{base}]",
                      "budget.max_seconds_per_input=8")  # fmt: skip
    t0 = time.monotonic()
    summary = build(cfg)
    assert time.monotonic() - t0 < 120
    clips, errors = _rows(tmp_path / "out")
    assert errors == {"stalled:probe": ("timeout", "probe")}
    assert {c["video_id"] for c in clips.values()} == {"norange", "square"}
    assert summary["num_inputs_unaccounted"] == 0


def test_memory_filesystem_input_and_output_in_process(models, sample_set):
    """memory:// exists only in this process: the in-process executor reads it (the decode
    jobs run inline), writes the shards back to memory://, and the validator reads them."""
    import fsspec

    fs = fsspec.filesystem("memory")
    fs.pipe(
        "/build_in/a/landscape.mp4", Path(sample_set["videos"]["landscape"]["path"]).read_bytes()
    )
    fs.pipe("/build_in/a/empty.mp4", b"")
    cfg = demo_config(models, "memory://build_in/a", "memory://build_out", "caption.source=none",
                      "engine.executor=local", "text.enabled=false")  # fmt: skip
    summary = build(cfg)
    assert summary["clips"] == 3 and summary["errors_by_kind"] == {"zero_byte": 1}
    assert validate("memory://build_out").ok
    (shard,) = fs.glob("/build_out/clips/*.parquet")
    with fs.open(shard, "rb") as f:
        t = pq.read_table(f)
    assert set(t.column("caption_source").to_pylist()) == {"none"}
    assert t.column("source_uri").to_pylist()[0] == "memory:///build_in/a/landscape.mp4"


# ---- configuration, secrets, confinement, failures ------------------------------------------


def test_cli_reports_config_errors_and_prints_the_resolved_config(tmp_path, capsys):
    from sama.cli import main

    assert main(["build", str(ROOT / "configs/build_demo.yaml"), "clips.num_frames=16"]) == 2
    assert "4k+1" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="input.uri"):
        build_main([str(ROOT / "configs/build_demo.yaml"), "input.uri=", "models_dir=x"])
    secret = "input.storage_options={key: AKIASECRET1, secret: hush2}"
    assert main(["build", str(ROOT / "configs/build_demo.yaml"), "models_dir=m", secret,
                 "--print-config"]) == 0  # fmt: skip
    import yaml

    text = capsys.readouterr().out
    printed = yaml.safe_load(text)
    assert printed["budget"]["max_seconds_per_input"] == 1800.0  # every default is there
    assert printed["engine"]["max_error_rate"] == 1.0
    assert "AKIASECRET1" not in text and "hush2" not in text
    assert printed["input"]["storage_options"] == {"key": "<redacted>", "secret": "<redacted>"}


def test_secrets_appear_nowhere_under_the_output_root(models, sample_set, tmp_path):
    """A secret in storage_options (LocalFileSystem takes any option) and in a URL query reaches
    no shard footer, config file or summary."""
    out = tmp_path / "o"
    cfg = demo_config(models, sample_set["manifest"], str(out), "engine.executor=local",
                      "input.storage_options={aws_secret_access_key: TOPSECRET77, token: TKN88}",
                      "output.storage_options={password: PASSWD99}", "input.limit=2")  # fmt: skip
    build(cfg)
    blobs = [p.read_bytes() for p in out.rglob("*") if p.is_file()]
    assert blobs and len(blobs) > 5
    for needle in (b"TOPSECRET77", b"TKN88", b"PASSWD99"):
        assert not any(needle in b for b in blobs), needle
    config = (out / "build_config.yaml").read_text()
    assert "aws_secret_access_key: <redacted>" in config


def test_manifest_entries_outside_the_allowed_roots_are_error_rows(models, sample_set, tmp_path):
    rows = [
        {"id": "ok", "video": "videos/landscape.mp4", "caption": "c"},
        {"id": "up", "video": "../../../etc/passwd", "caption": "c"},
        {"id": "abs", "video": "/etc/hostname", "caption": "c"},
        {"id": "meta", "video": "http://169.254.169.254/latest/meta-data/x.mp4", "caption": "c"},
    ]
    manifest = Path(sample_set["root"]) / "confined.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "o"
    summary = build(demo_config(models, str(manifest), str(out), "engine.executor=local",
                                "text.enabled=false"))  # fmt: skip
    _, errors = _rows(out)
    assert errors == {
        f"{i}:list_inputs": ("not_allowed", "list_inputs") for i in ("up", "abs", "meta")
    }
    assert summary["clips"] == 3 and summary["num_inputs_unaccounted"] == 0
    messages = _table(out, "errors").column("message").to_pylist()
    assert all("input.allowed_" in m for m in messages)


def test_an_unexpected_exception_is_an_internal_error_row(
    models, sample_set, tmp_path, monkeypatch
):
    """A bug on one input (not a SampleError) is retried, then filed as ``internal_error`` with
    the exception and where it was raised; the other inputs are built and a re-run skips it."""
    from pipelines.clips.probe_videos import ProbeVideos

    original = ProbeVideos._probe
    calls = []

    def buggy(self, row):
        calls.append(row["source_uri"])
        if "portrait" in row["source_uri"]:
            raise RuntimeError("a bug in the prober")
        return original(self, row)

    monkeypatch.setattr(ProbeVideos, "_probe", buggy)
    out = tmp_path / "o"
    cfg = demo_config(models, sample_set["manifest"], str(out), "engine.executor=local",
                      "text.enabled=false", "engine.input_retries=2")  # fmt: skip
    summary = build(cfg)
    errs = {r["error_id"]: r for r in _table(out, "errors").to_pylist()}
    internal = [r for r in errs.values() if r["kind"] == "internal_error"]
    assert internal and all(r["item_id"] == "portrait" for r in internal)
    assert len(internal) == 1 and internal[0]["stage"] == "probe"
    assert "RuntimeError: a bug in the prober (at test_build.py" in internal[0]["message"]
    assert "in buggy)" in internal[0]["message"]
    assert sum("portrait" in c for c in calls) == 3  # the first try and 2 retries
    assert summary["num_inputs_unaccounted"] == 0 and validate(str(out)).ok
    assert build(cfg)["run"]["processed_inputs"] == 0  # never looped on


def test_max_error_rate_makes_the_build_exit_non_zero(models, sample_set, tmp_path, capsys):
    args = [str(ROOT / "configs/build_demo.yaml"), f"models_dir={models}",
            f"input.uri={sample_set['manifest']}", f"output.uri={tmp_path / 'o'}",
            "engine.executor=local", "text.enabled=false"]  # fmt: skip
    # 4 of the 9 inputs give no clip (the 5th broken one is salvaged: its good frames are cut)
    assert build_main([*args, "engine.max_error_rate=0.4"]) == 1
    err = capsys.readouterr().err
    assert "FAILED: 4 of 9 inputs failed (44.4%), more than engine.max_error_rate=0.4" in err
    assert build_main([*args, "engine.max_error_rate=0.5"]) == 0  # the same root, resumed


def test_fused_decode_and_encode_give_the_same_rows(built, ray_address, models, corpus, tmp_path):
    """``engine.fuse``: cutting, captioning and the encoders in one actor (the frames never
    cross the object store) give exactly the rows of the unfused build."""
    out = tmp_path / "fused"
    fuse = "engine.fuse=[[cut_clips, caption, encode_anchors, encode_latents]]"
    # the fused actor takes the largest CPU share of its stages: half a CPU leaves room for
    # the probe and write tasks on this 2-CPU Ray
    share = ["engine.clips.num_cpus=0.5", "engine.caption.num_cpus=0.5", "engine.probe.num_cpus=0.5"]
    summary = build(_config(models, corpus, out, fuse, *share))
    assert summary["num_inputs_unaccounted"] == 0
    fused = "Stage_cut_clips_caption_encode_anchors_encode_latents"  # one actor for the group
    assert any(fused in k for k in summary["run"]["stages"]), summary["run"]["stages"]
    _same_rows(out, built["root"])
