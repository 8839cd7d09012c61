"""``sama publish``: the dry-run folder loads with ``datasets`` (previews as images) exactly as the
Hub would load it; invalid or secret-carrying data is refused; the upload goes through
``huggingface_hub``'s LFS path to a local Hub server (``tests/hub_server.py``), survives a
SIGKILL midway (the re-run ends with the same repo contents, sending nothing twice), retries
429s and never prints the token; with ``hf_xet`` the library's Xet pipeline uploads into a local
CAS. An opt-in test pushes to the real Hub."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from pipelines.cli_tools import publish_main
from pipelines.publish.card import license_fields
from pipelines.publish.hub import PublishRefused, plan_publish, upload, write_folder
from tests.hub_server import LocalHub, hub_env

TOKEN = "hf_FAKEtokenNEVERprintedXYZ123"
REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def hub(monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)  # only 127.0.0.1 is reached
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)  # the LFS path (no Xet server)
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    server = LocalHub()
    yield server
    server.close()


def folder_files(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


def shard_rows(root: Path, kind: str) -> list[dict]:
    paths = sorted((root / kind).glob("*.parquet"))
    return pa.concat_tables([pq.read_table(p) for p in paths]).to_pylist()


def load_rows(folder: Path, name: str, cache: Path, decode: bool = False) -> list[dict]:
    import datasets

    ds = datasets.load_dataset(str(folder), name=name, split="train", cache_dir=str(cache))
    if not decode and "preview" in ds.features:
        ds = ds.cast_column("preview", datasets.Image(decode=False))
    return ds.to_list()


def dry_run(root: Path, out: Path, *extra: str) -> dict[str, bytes]:
    assert publish_main([str(root), "me/tiny", "--dry-run", str(out), *extra]) == 0
    return folder_files(out)


def test_dry_run_folder_loads_with_datasets(dataset, tmp_path, capsys):
    root, built = dataset
    out = tmp_path / "repo"
    files = dry_run(root, out)
    printed = capsys.readouterr().out
    assert "config 'clips': 2 file(s) data/clips/*.parquet (7 rows)" in printed
    assert "nothing uploaded" in printed
    assert sorted(files) == [
        "README.md",
        "build_config.yaml",
        "data/clips/part-00000.parquet",
        "data/clips/part-00001.parquet",
        "data/errors/part-00000.parquet",
        "data/pairs/part-00000.parquet",
    ]
    card = (out / "README.md").read_text()
    meta = yaml.safe_load(card.split("---")[1])
    assert meta["license"] == "cc-by-4.0" and "license_name" not in meta
    assert [c["config_name"] for c in meta["configs"]] == ["clips", "pairs", "errors"]
    assert meta["configs"][0]["default"] is True
    features = {
        i["config_name"]: {f["name"]: f for f in i["features"]} for i in meta["dataset_info"]
    }
    assert features["clips"]["preview"] == {"name": "preview", "dtype": "image"}
    assert features["pairs"]["target_latents"]["dtype"] == "large_binary"
    assert "| `latents` | `large_binary` | tensor[C,T,H,W] |" in card
    assert "Wan-AI/Wan2.1-T2V-14B-Diffusers" in card and "## Build stats" in card
    for name in ("clips", "pairs", "errors"):
        assert load_rows(out, name, tmp_path / "cache") == shard_rows(root, name), name
    import datasets
    from PIL import Image

    default = datasets.load_dataset(str(out), split="train", cache_dir=str(tmp_path / "cache"))
    assert default.num_rows == 7  # clips is the default config
    assert isinstance(default.features["preview"], datasets.Image)
    picture = default[0]["preview"]  # the anchor frame, shown as an image
    assert isinstance(picture, Image.Image) and picture.size == (96, 64)


def test_many_shards_are_split_into_folders(dataset, tmp_path):
    root, _ = dataset
    plan = plan_publish(str(root), "me/tiny", files_per_folder=1, files_per_commit=2)
    assert plan.data_files["clips"] == "data/clips/*/*.parquet"
    assert {f.repo_path for f in plan.files} >= {
        "data/clips/0000/part-00000.parquet",
        "data/clips/0001/part-00001.parquet",
    }
    lfs = plan.groups(xet=False)
    assert [len(g) for g in lfs] == [2, 2, 2] and [f.repo_path for f in lfs[-1]] == [
        "build_config.yaml",
        "README.md",
    ]
    assert [len(g) for g in plan.groups(xet=True)] == [4, 2]  # Xet sizes its own commits
    out = write_folder(plan, tmp_path / "repo")
    assert load_rows(out, "clips", tmp_path / "cache") == shard_rows(root, "clips")
    with pytest.raises(PublishRefused, match="not empty"):
        write_folder(plan, out)


def test_invalid_data_is_refused(dataset, tmp_path, capsys):
    root, _ = dataset
    path = root / "clips" / "part-00001.parquet"
    path.write_bytes(path.read_bytes()[:500])
    out = tmp_path / "repo"
    assert publish_main([str(root), "me/tiny", "--dry-run", str(out)]) == 1
    err = capsys.readouterr().err
    assert "refusing to publish invalid data" in err and "part-00001.parquet" in err
    assert not out.exists()


def test_secrets_stay_out_of_the_repo(dataset, tmp_path, fx, capsys):
    root, _ = dataset
    cfg = {
        "license": "cc-by-4.0",
        "input": {"storage_options": {"key": "AKIAsecretKEY"}},
        "output": {"uri": "s3://user:hunter2@bucket/ds"},
    }
    (root / "build_config.yaml").write_text(yaml.safe_dump(cfg))
    files = dry_run(root, tmp_path / "repo")
    for name in ("README.md", "build_config.yaml"):
        text = files[name].decode()
        assert "AKIAsecretKEY" not in text and "hunter2" not in text and "<redacted>" in text
    from datasets_spec import CLIPS
    from sama.shards import write_shard

    prov = fx.provenance("clips")
    prov["build_config"] = {"input": {"storage_options": {"token": "hf_leaked"}}}
    table = pq.read_table(root / "clips" / "part-00001.parquet")
    write_shard(str(root / "clips" / "part-00001.parquet"), table, CLIPS, prov)
    assert publish_main([str(root), "me/tiny", "--dry-run", str(tmp_path / "again")]) == 1
    err = capsys.readouterr().err
    assert "secret-looking values" in err and "hf_leaked" not in err


def test_mixed_spec_versions_are_refused(dataset, fx, capsys, tmp_path):
    import numpy as np

    from datasets_spec import CLIPS_V1
    from sama.shards import write_shard

    root, _ = dataset
    row = fx.clip_row("v1", 5, 0, np.random.default_rng(2), "/x.mp4")
    write_shard(
        str(root / "clips" / "part-00002.parquet"),
        CLIPS_V1.from_rows([row]),
        CLIPS_V1,
        fx.provenance("clips", version="v1"),
    )
    assert publish_main([str(root), "me/tiny", "--dry-run", str(tmp_path / "r")]) == 1
    assert "mixes spec versions ['clips/v1', 'clips/v2']" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("given", "link", "want"),
    [
        ("CC-BY-4.0", None, {"license": "cc-by-4.0"}),
        ("Apache-2.0", None, {"license": "apache-2.0"}),
        (
            "OpenVE Research Licence 1.0",
            "https://x.org/l",
            {
                "license": "other",
                "license_name": "openve-research-licence-1.0",
                "license_link": "https://x.org/l",
            },
        ),
        (None, None, {"license": "unknown"}),
    ],
)
def test_license_fields(given, link, want):
    assert license_fields(given, link) == want


def test_card_shows_curation_and_a_custom_licence(dataset, tmp_path):
    from pipelines.cli_tools import dedup_main
    from pipelines.dataset.dedup_table import read_dedup_table

    root, _ = dataset
    assert dedup_main([str(root), "--executor", "local", "--threshold", "0.3"]) == 0
    table = read_dedup_table(str(root))
    cfg = {"license": "My Data Licence", "license_link": "https://example.org/licence"}
    (root / "build_config.yaml").write_text(yaml.safe_dump(cfg))
    files = dry_run(root, tmp_path / "repo")
    card = files["README.md"].decode()
    meta = yaml.safe_load(card.split("---")[1])
    assert meta["license"] == "other" and meta["license_name"] == "my-data-licence"
    assert meta["license_link"] == "https://example.org/licence"
    assert [f for f in files if f.startswith("data/dedup/")] == [
        f"data/dedup/{p.name}" for p in root.glob("dedup/*.parquet")
    ]
    assert "## Curation" in card
    n, groups = len(table.clip_id), table.groups
    assert f"{n} of 7 clips are marked as near-duplicates of {groups} kept clips" in card
    assert "| threshold (cosine of the SigLIP global anchor tokens) | 0.3 |" in card
    assert "| `filtered` | VLM judge: pair under the score thresholds | 1 |" in card
    assert f"| `dedup` | dedup/v1 | {n} | 1 | `data/dedup/*.parquet` |" in card


def test_upload_goes_through_lfs_and_hides_the_token(dataset, hub, tmp_path, capsys, caplog):
    import logging

    root, _ = dataset
    want = dry_run(root, tmp_path / "dry")
    capsys.readouterr()
    caplog.set_level(logging.INFO)
    argv = [str(root), "me/tiny", "--endpoint", hub.url, "--files-per-commit", "2", "--private"]
    assert publish_main(argv) == 0
    out, err = capsys.readouterr()
    assert "published me/tiny: 6 file(s) on the Hub, 3 upload call(s), 0 stale deleted" in out
    assert hub.files("me/tiny") == want  # byte for byte, the dry-run folder
    commits = hub.commits("me/tiny")
    assert [len(c["added"]) for c in commits] == [2, 2, 2]  # more files than one commit holds
    assert commits[-1]["added"] == ["README.md", "build_config.yaml"]  # the card goes last
    assert hub.calls["lfs_batch"] and hub.calls["lfs_upload"] == 4 and hub.calls["lfs_verify"] == 4
    assert hub.yaml and hub.yaml[0]["license"] == "cc-by-4.0"  # README validated before commit
    bearer = {f"Bearer {TOKEN}"}
    assert all(hub.auth[e] == bearer for e in hub.auth if e != "lfs_upload")
    assert hub.auth["lfs_upload"] == {""}  # storage URLs get no token (pre-signed on the Hub)
    assert TOKEN not in out + err + caplog.text
    assert publish_main(argv) == 0  # a second run sends nothing
    assert hub.calls["lfs_upload"] == 4 and len(hub.commits("me/tiny")) == 3


def test_429_answers_are_retried(dataset, hub, capsys):
    root, _ = dataset
    for endpoint in ("preupload", "lfs_batch", "lfs_upload", "commit"):
        hub.fail(endpoint, 429)
    hub.fail("commit", 503)
    argv = [str(root), "me/tiny", "--endpoint", hub.url, "--files-per-commit", "4"]
    assert publish_main(argv) == 0
    out = capsys.readouterr().out
    assert "the Hub answered 429; sending again" in out and "the Hub answered 503" in out
    assert "2 retried" in out  # the two commit POSTs; the library retried the other three
    assert len(hub.files("me/tiny")) == 6 and len(hub.commits("me/tiny")) == 2


def test_stale_files_are_deleted_on_a_branch(dataset, hub, capsys):
    root, _ = dataset
    argv = [str(root), "me/tiny", "--endpoint", hub.url, "--revision", "v1"]
    assert publish_main(argv) == 0
    from huggingface_hub import CommitOperationAdd, HfApi

    HfApi(endpoint=hub.url).create_commit(
        "me/tiny",
        [CommitOperationAdd("data/clips/old-build.parquet", b"PAR1 old")],
        commit_message="an older build",
        repo_type="dataset",
        revision="v1",
    )
    capsys.readouterr()
    assert publish_main(argv) == 0
    assert "1 stale deleted" in capsys.readouterr().out
    assert "data/clips/old-build.parquet" not in hub.files("me/tiny", "v1")
    assert hub.files("me/tiny", "main") == {}  # main untouched


def test_object_store_root_is_staged_a_group_at_a_time(tmp_path, fx, hub, monkeypatch):
    import fsspec

    from pipelines.publish import hub as hub_mod

    fx.make_dataset(tmp_path / "ds", tmp_path / "media")
    want = dry_run(tmp_path / "ds", tmp_path / "dry")
    mem = fsspec.filesystem("memory")
    mem.put(str(tmp_path / "ds"), "/pubds", recursive=True)
    staged_sizes = []
    real = hub_mod.staged

    def spy(plan, group, parent):
        staged_sizes.append(sum(f.size for f in group))
        return real(plan, group, parent)

    monkeypatch.setattr(hub_mod, "staged", spy)
    try:
        plan = plan_publish("memory://pubds", "me/tiny", files_per_commit=50)
        assert not plan.local
        biggest = max(f.size for f in plan.files)
        upload(plan, endpoint=hub.url, stage_bytes=biggest, log=lambda m: None)
    finally:
        mem.rm("/pubds", recursive=True)
    assert hub.files("me/tiny") == want
    assert len(staged_sizes) == 5 and max(staged_sizes) <= biggest  # one shard per group


def test_publish_needs_a_token(dataset, hub, monkeypatch, tmp_path, capsys):
    root, _ = dataset
    monkeypatch.delenv("HF_TOKEN")
    monkeypatch.setattr("huggingface_hub.constants.HF_TOKEN_PATH", str(tmp_path / "none"))
    assert publish_main([str(root), "me/tiny", "--endpoint", hub.url]) == 1
    assert "no Hugging Face token" in capsys.readouterr().err
    assert sum(hub.calls.values()) == 0


def test_offline_mode_is_explained(dataset, monkeypatch, capsys):
    root, _ = dataset
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    assert publish_main([str(root), "me/tiny"]) == 1
    assert "HF_HUB_OFFLINE" in capsys.readouterr().err


def _publish_cmd(root: Path, repo: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", "sama.cli", "publish", str(root), repo, *extra]


def test_killed_upload_resumes_to_the_same_repo(tmp_path, fx, hub):
    """More files than one commit holds; SIGKILL after the first commit; the re-run finishes
    and the repo holds exactly the dry-run folder, no file committed twice."""
    root = tmp_path / "ds"
    fx.make_dataset(root, tmp_path / "media")
    want = dry_run(root, tmp_path / "dry")
    env = {**os.environ, **hub_env(hub, TOKEN), "PYTHONPATH": str(REPO_ROOT)}
    hub.delay["lfs_upload"] = 0.4  # slow uploads, so the kill lands midway
    cmd = _publish_cmd(root, "me/tiny", "--files-per-commit", "1")
    proc = subprocess.Popen(
        cmd, env=env, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        assert hub.committed.wait(120), "no commit within 120 s"
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        proc.kill()
    assert proc.returncode == -signal.SIGKILL
    first = [p for c in hub.commits("me/tiny") for p in c["added"]]
    assert 1 <= len(first) < len(want)  # interrupted midway
    hub.delay.clear()
    done = subprocess.run(cmd, env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert TOKEN not in done.stdout + done.stderr
    assert hub.files("me/tiny") == want
    added = [p for c in hub.commits("me/tiny") for p in c["added"]]
    assert sorted(added) == sorted(want)  # every file committed once: nothing sent twice


@pytest.mark.skipif(
    not (os.environ.get("HF_TOKEN") and os.environ.get("SAMA_TEST_HUB_REPO")),
    reason="opt-in: set HF_TOKEN and SAMA_TEST_HUB_REPO=org/name (a dataset repo you own) to "
    "publish to the real Hub",
)
def test_publish_to_the_real_hub(dataset, monkeypatch, tmp_path):
    from huggingface_hub import HfApi, constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    root, _ = dataset
    want = dry_run(root, tmp_path / "dry")
    branch = f"sama-test-{uuid.uuid4().hex[:8]}"
    repo = os.environ["SAMA_TEST_HUB_REPO"]
    assert publish_main([str(root), repo, "--private", "--revision", branch]) == 0
    api = HfApi()
    try:
        tree = api.list_repo_tree(repo, repo_type="dataset", revision=branch, recursive=True)
        sizes = {e.path: e.size for e in tree if hasattr(e, "blob_id")}
        assert {p: sizes.get(p) for p in want} == {p: len(b) for p, b in want.items()}
    finally:
        api.delete_branch(repo, repo_type="dataset", branch=branch)


def test_upload_through_the_xet_pipeline(dataset, tmp_path, monkeypatch, capsys):
    """With ``hf_xet`` (as on the Hub): ``hf_xet`` chunks the shards into a local CAS (its own
    ``local://`` client), the library's pipeline commits them by sha256 in one call, the card
    goes in a second call; a re-run commits nothing."""
    import hashlib

    from huggingface_hub import constants

    from tests.hub_server import XetBlob

    root, _ = dataset
    want = dry_run(root, tmp_path / "dry")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", False)
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    server = LocalHub(xet_cas=f"local://{tmp_path / 'cas'}")
    try:
        argv = [str(root), "me/tiny", "--endpoint", server.url]
        assert publish_main(argv) == 0
        assert "2 upload(s) (Xet pipeline)" in capsys.readouterr().out
        files = server.files("me/tiny")
        assert sorted(files) == sorted(want)
        for path, content in want.items():
            got = files[path]
            if path.endswith(".parquet"):  # chunked into the CAS, committed by its sha256
                assert got == XetBlob(hashlib.sha256(content).hexdigest(), len(content))
            else:
                assert got == content
        assert [len(c["added"]) for c in server.commits("me/tiny")] == [4, 2]
        assert server.calls["xet_token"] and not server.calls["lfs_upload"]
        assert any((tmp_path / "cas").rglob("*"))  # xorbs and shards written by hf_xet
        assert publish_main(argv) == 0  # nothing changed: nothing committed
        assert len(server.commits("me/tiny")) == 2
    finally:
        server.close()
