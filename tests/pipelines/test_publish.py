"""``sama publish``: the dry-run folder loads with ``datasets`` exactly as the Hub would load it,
invalid data is refused, and the upload calls (recorded by a local fake Hub, never the real one)
are batched, resumable and never leak the token."""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlparse

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from pipelines.cli_tools import publish_main
from pipelines.publish.hub import CommitRateLimiter, PublishRefused, plan_publish, write_folder

TOKEN = "hf_FAKEtokenNEVERprintedXYZ123"


class FakeHub:
    """The few Hub endpoints ``create_repo``, ``create_branch``, ``list_repo_tree``,
    ``preupload`` and ``create_commit`` (regular, non-LFS uploads) use in huggingface_hub 2.4."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}  # repo path -> content (one repo, one branch)
        self.calls: list[tuple[str, str]] = []  # (method, path)
        self.commits: list[dict] = []  # {"summary", "added", "deleted"}
        self.auth: set[str] = set()
        self.fail_commit: set[int] = set()  # 1-based commit attempts answered with 500
        self.yaml: list[dict] = []
        self._attempts = 0
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output quiet
                pass

            def do_GET(self):
                hub._handle(self, "GET")

            def do_POST(self):
                hub._handle(self, "POST")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def _handle(self, h: BaseHTTPRequestHandler, method: str) -> None:
        path = urlparse(h.path).path
        self.calls.append((method, path))
        self.auth.add(h.headers.get("authorization", ""))
        body = h.rfile.read(int(h.headers.get("content-length") or 0))
        parts = path.strip("/").split("/")
        if method == "POST" and path == "/api/repos/create":
            req = json.loads(body)
            return self._json(
                h, {"url": f"{self.url}/datasets/{req['organization']}/{req['name']}"}
            )
        if method == "POST" and path == "/api/validate-yaml":
            text = json.loads(body)["content"]
            self.yaml.append(yaml.safe_load(text.split("---")[1]))
            return self._json(h, {"errors": [], "warnings": []})
        if len(parts) >= 5 and parts[:2] == ["api", "datasets"]:
            action = parts[4]
            if method == "GET" and action == "tree":
                return self._json(
                    h,
                    [
                        {"type": "file", "path": p, "size": len(b), "oid": _git_sha1(b)}
                        for p, b in sorted(self.files.items())
                    ],
                )
            if method == "POST" and action == "preupload":
                files = json.loads(body)["files"]
                return self._json(
                    h,
                    {
                        "files": [
                            {
                                "path": f["path"],
                                "uploadMode": "regular",
                                "shouldIgnore": False,
                                "oid": _git_sha1(self.files[f["path"]])
                                if f["path"] in self.files
                                else None,
                            }
                            for f in files
                        ]
                    },
                )
            if method == "POST" and action == "branch":
                return self._json(h, {})
            if method == "POST" and action == "commit":
                return self._commit(h, body, f"{parts[2]}/{parts[3]}")
        self._json(h, {"error": f"not faked: {method} {path}"}, 404)

    def _commit(self, h, body: bytes, repo: str) -> None:
        self._attempts += 1
        if self._attempts in self.fail_commit:
            return self._json(h, {"error": "simulated outage"}, 500)
        lines = [json.loads(x) for x in body.decode().splitlines() if x.strip()]
        commit = {"summary": lines[0]["value"]["summary"], "added": [], "deleted": []}
        for item in lines[1:]:
            v = item["value"]
            if item["key"] == "file":
                self.files[v["path"]] = base64.b64decode(v["content"])
                commit["added"].append(v["path"])
            elif item["key"] == "deletedFile":
                self.files.pop(v["path"])
                commit["deleted"].append(v["path"])
            else:
                raise AssertionError(f"unexpected commit item {item['key']}")
        self.commits.append(commit)
        oid = hashlib.sha1(json.dumps(commit).encode()).hexdigest()
        self._json(h, {"commitUrl": f"{self.url}/datasets/{repo}/commit/{oid}", "commitOid": oid})

    @staticmethod
    def _json(h, obj, status: int = 200) -> None:
        blob = json.dumps(obj).encode()
        h.send_response(status)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(blob)))
        h.end_headers()
        h.wfile.write(blob)


def _git_sha1(b: bytes) -> str:
    return hashlib.sha1(f"blob {len(b)}\0".encode() + b).hexdigest()


@pytest.fixture
def hub(monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)  # only 127.0.0.1 is reached
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    fake = FakeHub()
    yield fake
    fake.server.shutdown()


def shard_rows(root: Path, kind: str) -> list[dict]:
    paths = sorted((root / kind).glob("*.parquet"))
    return pa.concat_tables([pq.read_table(p) for p in paths]).to_pylist()


def load_rows(folder: Path, name: str, cache: Path) -> list[dict]:
    import datasets

    ds = datasets.load_dataset(str(folder), name=name, split="train", cache_dir=str(cache))
    return ds.to_list()


def test_dry_run_folder_loads_with_datasets(dataset, tmp_path, capsys):
    root, _ = dataset
    out = tmp_path / "repo"
    assert publish_main([str(root), "me/tiny", "--dry-run", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "config 'clips': 2 file(s) data/clips/*.parquet (7 rows)" in printed
    assert "nothing uploaded" in printed
    files = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert files == [
        "README.md",
        "build_config.yaml",
        "data/clips/part-00000.parquet",
        "data/clips/part-00001.parquet",
        "data/errors/part-00000.parquet",
        "data/pairs/part-00000.parquet",
    ]
    card = (out / "README.md").read_text()
    meta = yaml.safe_load(card.split("---")[1])
    assert meta["license"] == "cc-by-4.0"
    assert [c["config_name"] for c in meta["configs"]] == ["clips", "pairs", "errors"]
    assert meta["configs"][0]["default"] is True
    assert "| `latents` | `large_binary` | tensor[C,T,H,W] |" in card
    assert "Wan-AI/Wan2.1-T2V-14B-Diffusers" in card and "## Build stats" in card
    for name in ("clips", "pairs", "errors"):
        assert load_rows(out, name, tmp_path / "cache") == shard_rows(root, name), name
    import datasets

    default = datasets.load_dataset(str(out), split="train", cache_dir=str(tmp_path / "cache"))
    assert default.num_rows == 7  # clips is the default config


def test_many_shards_are_split_into_folders(dataset, tmp_path):
    root, _ = dataset
    plan = plan_publish(str(root), "me/tiny", files_per_folder=1, files_per_commit=2)
    assert plan.data_files["clips"] == "data/clips/*/*.parquet"
    assert {f.repo_path for f in plan.files} >= {
        "data/clips/0000/part-00000.parquet",
        "data/clips/0001/part-00001.parquet",
    }
    assert [len(b) for b in plan.batches()] == [2, 2, 2]
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


def test_upload_batches_commits_and_hides_the_token(dataset, hub, capsys, caplog):
    root, _ = dataset
    caplog.set_level(logging.INFO)
    argv = [str(root), "me/tiny", "--endpoint", hub.url, "--files-per-commit", "2", "--private"]
    assert publish_main(argv) == 0
    out, err = capsys.readouterr()
    assert "published me/tiny: 6 uploaded, 0 already there, 0 stale deleted, 3 commit(s)" in out
    assert len(hub.commits) == 3 and all(len(c["added"]) <= 2 for c in hub.commits)
    assert hub.commits[-1]["added"][-1] == "README.md"  # the card goes last
    for p in (root / "clips").glob("*.parquet"):
        assert hub.files[f"data/clips/{p.name}"] == p.read_bytes()
    assert yaml.safe_load(hub.files["README.md"].decode().split("---")[1])["configs"]
    assert hub.yaml and hub.yaml[0]["license"] == "cc-by-4.0"  # README validated before commit
    assert hub.auth == {f"Bearer {TOKEN}"}
    assert TOKEN not in out + err + caplog.text
    methods = {(m, p.split("/")[5] if p.startswith("/api/datasets/") else p) for m, p in hub.calls}
    assert methods == {
        ("POST", "/api/repos/create"),
        ("GET", "tree"),
        ("POST", "preupload"),
        ("POST", "/api/validate-yaml"),
        ("POST", "commit"),
    }


def test_upload_resumes_after_an_interruption(dataset, hub, capsys):
    root, _ = dataset
    hub.files["data/clips/stale-from-an-old-build.parquet"] = b"old"
    hub.fail_commit = {2}
    argv = [
        str(root),
        "me/tiny",
        "--endpoint",
        hub.url,
        "--files-per-commit",
        "2",
        "--revision",
        "v1",
    ]
    assert publish_main(argv) == 1
    assert "simulated outage" in capsys.readouterr().err
    first = [p for c in hub.commits for p in c["added"]]
    assert len(hub.commits) == 1 and len(first) == 1  # the stale delete + one shard
    assert hub.commits[0]["deleted"] == ["data/clips/stale-from-an-old-build.parquet"]
    assert publish_main(argv) == 0
    assert "1 already there" in capsys.readouterr().out
    again = [p for c in hub.commits[1:] for p in c["added"]]
    assert set(first).isdisjoint(again)  # nothing sent twice
    shards = [f"data/{p.parent.name}/{p.name}" for p in root.rglob("*.parquet")]
    assert sorted(hub.files) == sorted([*shards, "README.md", "build_config.yaml"])
    assert ("POST", "/api/datasets/me/tiny/branch/v1") in hub.calls
    assert publish_main(argv) == 0  # a third run has nothing to do
    assert "6 file(s) already on the Hub, 0 to upload" in capsys.readouterr().out
    assert len(hub.commits) == 4


def test_publish_needs_a_token(dataset, hub, monkeypatch, tmp_path, capsys):
    root, _ = dataset
    monkeypatch.delenv("HF_TOKEN")
    monkeypatch.setattr("huggingface_hub.constants.HF_TOKEN_PATH", str(tmp_path / "none"))
    assert publish_main([str(root), "me/tiny", "--endpoint", hub.url]) == 1
    assert "no Hugging Face token" in capsys.readouterr().err
    assert hub.calls == []


def test_offline_mode_is_explained(dataset, monkeypatch, capsys):
    root, _ = dataset
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    assert publish_main([str(root), "me/tiny"]) == 1
    assert "HF_HUB_OFFLINE" in capsys.readouterr().err


def test_rate_limiter_waits_for_the_hour_window():
    now = [0.0]
    slept: list[float] = []

    def sleep(s):
        slept.append(s)
        now[0] += s

    lim = CommitRateLimiter(per_hour=3, clock=lambda: now[0], sleep=sleep)
    for _ in range(3):
        lim.wait()
        now[0] += 10
    assert slept == []
    lim.wait()  # the 4th commit within the hour waits until the 1st is an hour old
    assert slept == [3600 - 30]
    now[0] += 7200
    lim.wait()
    assert len(slept) == 1
