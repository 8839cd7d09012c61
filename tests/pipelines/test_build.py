"""``sama build`` end to end on Ray (one local Ray session shared by the module).

Generated videos with known cuts (H.264, MPEG-4, AV1) plus every kind of bad input: clip
boundaries fall inside the true shots, shards validate against ``clips/v1`` and load with
``datasets``, every bad input is an error row of the right kind; a re-run skips finished inputs;
a build killed with SIGKILL and resumed has the same rows as an uninterrupted one; remote inputs
(HTTP through Ray, ``memory://`` in-process) work.
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from datasets_spec import CLIPS_V1, ERRORS_V1
from datasets_spec.provenance import REQUIRED, read_provenance
from pipelines.build import build, build_main
from pipelines.dataset.validate import validate
from sama.errors import ConfigError
from sama.media import write_shot_video
from tests.pipelines.helpers import demo_config, tiny_models

ROOT = Path(__file__).resolve().parents[2]
EXPECTED_ERRORS = {
    "bad_zero_byte": "zero_byte",
    "bad_not_a_video": "not_a_video",
    "bad_truncated": "truncated",
    "bad_truncated_faststart": "truncated",
    "bad_missing": "not_found",
    "too_short": "too_short",
    "no_long_shot": "no_usable_shot",
}


@pytest.fixture(scope="module")
def ray_address():
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
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
    truth = {k: v for k, v in sample_set["videos"].items()}
    for name, shots in extra.items():
        path = root / f"{name}.mp4"
        cuts = write_shot_video(path, shots, size=(96, 64), seed=9)
        rows.append({"id": name, "video": str(path), "caption": f"{name} video"})
        truth[name] = {"cuts": cuts, "num_frames": sum(shots), "path": str(path)}
    manifest = root / "manifest.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return {"manifest": str(manifest), "truth": truth, "ids": [r["id"] for r in rows]}


def _config(models, corpus, out, *overrides):
    return demo_config(models, corpus["manifest"], str(out), *overrides)


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


# ---- the end-to-end build ------------------------------------------------------------------


def test_every_input_is_a_clip_or_an_error_of_the_right_kind(built, corpus):
    s = built["summary"]
    assert [i["id"] for i in s["inputs"]] == corpus["ids"] and s["num_inputs"] == 11
    assert s["inputs_unaccounted"] == []
    clips, errors = _rows(built["root"])
    by_item = {eid.split(":")[0]: kind for eid, (kind, _) in errors.items()}
    assert by_item == EXPECTED_ERRORS
    with_clips = {c["video_id"] for c in clips.values()}
    assert with_clips == {"landscape", "portrait", "square", "av1"}
    assert s["clips"] == len(clips) == 10 and s["errors"] == 7
    assert s["errors_by_kind"] == {
        "no_usable_shot": 1,
        "not_a_video": 1,
        "not_found": 1,
        "too_short": 1,
        "truncated": 2,
        "zero_byte": 1,
    }
    assert json.loads((built["root"] / "summary.json").read_text())["inputs"] == s["inputs"]


def test_clip_boundaries_fall_inside_true_shots(built, corpus):
    clips, _ = _rows(built["root"])
    for c in clips.values():
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
    assert ds.num_rows == 10 and set(ds.column_names) == set(CLIPS_V1.column_names)
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


def test_rerun_skips_finished_inputs_before_decoding(built):
    before = sorted(p.name for p in built["root"].rglob("*.parquet"))
    again = build(built["cfg"])
    assert again["run"]["processed_inputs"] == 0 and again["run"]["skipped_inputs"] == 11
    assert again["clips"] == 10 and again["errors"] == 7
    assert sorted(p.name for p in built["root"].rglob("*.parquet")) == before


def test_config_that_changes_rows_refuses_the_same_output(built, models, corpus):
    with pytest.raises(ConfigError, match=r"clips\.num_frames: 17 -> 9"):
        build(_config(models, corpus, built["root"], "clips.num_frames=9"))


# ---- kill -9 then resume -------------------------------------------------------------------


def test_kill_mid_build_then_resume_gives_the_same_rows(
    built, ray_address, models, corpus, tmp_path
):
    out = tmp_path / "killed"
    # a shard (and markers) after every clip, so there is state to resume from
    small = ["output.shard_size_mb=0.000001", "output.row_group_rows=1"]
    cmd = [
        sys.executable,
        "-m",
        "sama.cli",
        "build",
        str(ROOT / "configs/build_demo.yaml"),
        f"models_dir={models}",
        f"input.uri={corpus['manifest']}",
        f"output.uri={out}",
        "engine.strict=true",
        *small,
        "--ray-address",
        ray_address,
    ]
    proc = subprocess.Popen(
        cmd, cwd=ROOT, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    done_dir = out / "_state" / "done"
    deadline = time.monotonic() + 120
    # a finished marker, not the `.tmp-*` file of one being written (pathlib globs match dotfiles)
    while not (done_dir.exists() and any(done_dir.glob("[!.]*.json"))):
        assert proc.poll() is None, proc.stderr.read().decode()[-3000:]
        assert time.monotonic() < deadline, "no input finished within 120 s"
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (out / "summary.json").exists(), "the build finished before it was killed"
    partial = sum(pq.read_metadata(p).num_rows for p in _shards(out, "clips"))
    summary = build(_config(models, corpus, out, *small))
    assert summary["run"]["resumed"] and summary["run"]["skipped_inputs"] >= 1
    assert summary["inputs_unaccounted"] == []
    clips, errors = _rows(out)
    ref_clips, ref_errors = _rows(built["root"])
    assert errors == ref_errors
    assert sorted(clips) == sorted(ref_clips)  # same set, no duplicates (validate checks ids)
    tensors = ("latents", "anchor_tokens", "text_embeds")
    for cid, row in clips.items():
        for col in tensors:
            assert row[col] == ref_clips[cid][col], (cid, col)
    assert validate(str(out)).ok and not list(out.rglob(".tmp-*"))  # leftovers removed
    print(f"killed after {partial} clips written; resume wrote {summary['run']['clips']}")


# ---- a real multi-process, two-node cluster ------------------------------------------------


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ray_node(args: list[str], log: Path) -> subprocess.Popen:
    """``ray start ... --block`` in its own process group (so the test stops exactly it)."""
    ray_bin = str(Path(sys.executable).with_name("ray"))
    common = [
        "--num-cpus=2",
        "--object-store-memory=100000000",
        "--block",
        "--dashboard-agent-listen-port=0",
        "--disable-usage-stats",
    ]
    return subprocess.Popen(
        [ray_bin, "start", *args, *common],
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def _wait_for(log: Path, text: str, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while text not in log.read_text():
        assert proc.poll() is None and time.monotonic() < deadline, log.read_text()[-2000:]
        time.sleep(0.2)


def test_build_on_a_two_node_cluster_gives_the_same_rows(built, models, corpus, tmp_path):
    """``ray start --head`` + a second ``ray start --address`` node (separate raylets and
    object stores), the build joins with ``--ray-address``; rows equal the local build's."""
    port = _free_port()
    # A temp dir of its own: `ray start` writes its address to TEMP/ray_current_cluster, and a
    # plain ray.init() anywhere on this machine would otherwise join this cluster. Short, for
    # the Unix socket paths under it.
    temp = tempfile.mkdtemp(prefix="sr", dir="/tmp")
    out, nodes = tmp_path / "cluster", []
    try:
        head = ["--head", f"--port={port}", "--include-dashboard=false", f"--temp-dir={temp}"]
        nodes.append(_ray_node(head, tmp_path / "head.log"))
        _wait_for(tmp_path / "head.log", "Ray runtime started", nodes[0])
        nodes.append(_ray_node([f"--address=127.0.0.1:{port}"], tmp_path / "node.log"))
        _wait_for(tmp_path / "node.log", "Ray runtime started", nodes[1])
        cmd = [sys.executable, "-m", "sama.cli", "build", str(ROOT / "configs/build_demo.yaml"),
               f"models_dir={models}", f"input.uri={corpus['manifest']}", f"output.uri={out}",
               "--ray-address", f"127.0.0.1:{port}"]  # fmt: skip
        done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
        probe = (
            f"import ray; ray.init(address='127.0.0.1:{port}', logging_level='ERROR'); "
            "print(sum(n['Alive'] for n in ray.nodes()))"
        )
        alive = subprocess.run(
            [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120
        )
        assert alive.stdout.strip().splitlines()[-1] == "2"  # two nodes in the cluster
    finally:
        for p in nodes:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
        shutil.rmtree(temp, ignore_errors=True)
    clips, errors = _rows(out)
    ref_clips, ref_errors = _rows(built["root"])
    assert errors == ref_errors and sorted(clips) == sorted(ref_clips)
    for cid, row in clips.items():
        assert row["latents"] == ref_clips[cid]["latents"], cid


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


def test_remote_http_input_through_ray(built, ray_address, models, sample_set, tmp_path):
    root = Path(sample_set["root"])
    handler = functools.partial(_RangeHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        manifest = tmp_path / "remote.jsonl"
        rows = [
            {"id": "landscape", "video": f"{base}/videos/landscape.mp4", "caption": "c"},
            {"id": "av1", "video": f"{base}/videos/av1.mkv", "caption": "c"},
            {"id": "gone", "video": f"{base}/videos/gone.mp4", "caption": "c"},
        ]
        manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
        cfg = demo_config(models, str(manifest), str(tmp_path / "out"), "text.enabled=false")
        summary = build(cfg)
    finally:
        server.shutdown()
    assert summary["inputs_unaccounted"] == [] and summary["errors_by_kind"] == {"not_found": 1}
    clips, _ = _rows(tmp_path / "out")
    ref, _ = _rows(built["root"])
    assert sorted(clips) == sorted(c for c in ref if c.split("-")[0] in ("landscape", "av1"))
    for cid, row in clips.items():  # the same pixels through HTTP as from disk
        assert row["source_uri"].startswith("http://")
        assert row["latents"] == ref[cid]["latents"]


def test_memory_filesystem_input_and_output_in_process(models, sample_set):
    """memory:// exists only in this process: the in-process executor reads it, writes the
    shards back to memory://, and the validator reads them there."""
    import fsspec

    fs = fsspec.filesystem("memory")
    fs.pipe(
        "/build_in/a/landscape.mp4", Path(sample_set["videos"]["landscape"]["path"]).read_bytes()
    )
    fs.pipe("/build_in/a/empty.mp4", b"")
    cfg = demo_config(
        models,
        "memory://build_in/a",
        "memory://build_out",
        "caption.source=none",
        "engine.executor=local",
        "text.enabled=false",
    )
    summary = build(cfg)
    assert summary["clips"] == 3 and summary["errors_by_kind"] == {"zero_byte": 1}
    assert validate("memory://build_out").ok
    (shard,) = fs.glob("/build_out/clips/*.parquet")
    with fs.open(shard, "rb") as f:
        t = pq.read_table(f)
    assert set(t.column("caption_source").to_pylist()) == {"none"}
    assert t.column("source_uri").to_pylist()[0] == "memory:///build_in/a/landscape.mp4"


def test_cli_reports_config_errors(tmp_path, capsys):
    from sama.cli import main

    assert main(["build", str(ROOT / "configs/build_demo.yaml"), "clips.num_frames=16"]) == 2
    assert "4k+1" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="input.uri"):
        build_main([str(ROOT / "configs/build_demo.yaml"), "input.uri=", "models_dir=x"])


def test_unexpected_error_fails_the_build_and_keeps_what_finished(
    models, sample_set, tmp_path, monkeypatch
):
    """A bug (not a bad sample) stops the build; inputs finished before it are written and
    marked, and the re-run skips them (CONVENTIONS.md rule 5, third tier)."""
    from pipelines.clips.cut_clips import CutClips
    from pipelines.engine.resume import BuildState

    shots = CutClips._shots

    def buggy(self, row):
        if row["video_id"] == "square":
            raise RuntimeError("a bug in the clip maker")
        return shots(self, row)

    monkeypatch.setattr(CutClips, "_shots", buggy)
    one = [f"engine.{s}.batch_size=1" for s in ("latents", "anchors", "text")]
    cfg = demo_config(models, sample_set["manifest"], str(tmp_path / "o"), "text.enabled=false",
                      "engine.executor=local", *one)  # fmt: skip
    with pytest.raises(RuntimeError, match="a bug in the clip maker"):
        build(cfg)
    import fsspec

    done = BuildState(fsspec.filesystem("file"), str(tmp_path / "o")).done_inputs()
    assert done == {"landscape", "portrait"}  # the manifest's first two, before "square"
    monkeypatch.undo()
    summary = build(cfg)
    assert summary["run"]["skipped_inputs"] == 2 and summary["inputs_unaccounted"] == []
    assert summary["clips"] == 10 and validate(str(tmp_path / "o")).ok
