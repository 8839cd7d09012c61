"""A local Hugging Face Hub (127.0.0.1) that speaks enough of the Hub's HTTP API for
``huggingface_hub`` 2.4 to upload through the LFS path and for ``HfFileSystem`` to read back.

Endpoints (as ``huggingface_hub/_commit_api.py``, ``lfs.py``, ``hf_api.py`` and
``hf_file_system.py`` call them):

- ``POST /api/repos/create``, ``POST /api/datasets/R/branch/B``, ``GET /api/datasets/R[/revision/B]``
- ``POST /api/datasets/R/preupload/B``: ``uploadMode`` ``lfs`` for data files (``.parquet`` and
  anything over 10 MB, as the Hub's ``.gitattributes`` rules say) and ``regular`` for the card
  and YAML, with the remote ``oid`` (sha256 for LFS, git blob sha1 for regular) so unchanged
  files are skipped;
- ``POST /datasets/R.git/info/lfs/objects/batch`` (basic transfer: an ``upload`` and a
  ``verify`` action per missing object, no actions for an object already stored),
  ``PUT /lfs/OID`` (sha256 and size checked), ``POST /lfs/verify``;
- ``POST /api/datasets/R/commit/B`` (ndjson: ``header``, ``file``, ``lfsFile`` (refused unless
  its object was uploaded), ``deletedFile``, ``deletedFolder``), ``POST /api/validate-yaml``;
- ``GET /api/datasets/R/tree/B[/PATH]?recursive=`` (paginated with a ``Link`` header),
  ``POST /api/datasets/R/paths-info/B``, ``GET|HEAD /datasets/R/resolve/B/PATH`` (``Range``).

Xet: by default the server speaks no Xet, and clients run with ``HF_HUB_DISABLE_XET=1``, which is
how ``huggingface_hub`` takes the LFS path. ``LocalHub(xet_cas="local:///DIR")`` also answers
``GET /api/datasets/R/xet-write-token/B`` with that CAS URL: ``hf_xet`` then chunks and stores
the files under DIR itself (its local CAS client) and the commit names them by sha256
(``lfsFile``), which the server records as ``XetBlob`` (content in the CAS, not served back).

Faults for tests: ``fail(endpoint, status, times)`` answers the next ``times`` calls of an
endpoint with ``status`` (429 with ``Retry-After: 0``); ``delay[endpoint] = s`` sleeps first.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qs, unquote, urlparse

import yaml

from tests.hub_http import Server, handler, read_body, route, send

LFS_MIN_BYTES = 10 * 1024 * 1024
PAGE = 50  # tree entries per page (the real Hub pages too; tests see the Link header work)


def git_sha1(data: bytes) -> str:
    return hashlib.sha1(f"blob {len(data)}\0".encode() + data).hexdigest()


def is_lfs(path: str, size: int) -> bool:
    return path.endswith((".parquet", ".arrow", ".bin")) or size >= LFS_MIN_BYTES


@dataclass(frozen=True)
class XetBlob:
    """A file committed by sha256 after ``hf_xet`` stored its chunks in the local CAS."""

    sha256: str
    size: int

    def __len__(self) -> int:
        return self.size


@dataclass
class Repo:
    branches: dict[str, dict[str, bytes]] = field(default_factory=lambda: {"main": {}})
    commits: list[dict] = field(default_factory=list)
    private: bool = False
    heads: dict[str, str] = field(default_factory=dict)  # branch -> commit oid


class LocalHub:
    """The server; ``url`` is its endpoint. Thread-safe; state is in memory."""

    def __init__(self, xet_cas: str | None = None) -> None:
        self.xet_cas = xet_cas
        self.repos: dict[str, Repo] = {}
        self.lfs: dict[str, bytes] = {}  # sha256 -> content
        self.calls: Counter = Counter()  # endpoint -> count
        self.auth: dict[str, set[str]] = defaultdict(set)  # endpoint -> Authorization headers
        self.yaml: list[dict] = []
        self.delay: dict[str, float] = {}
        self.committed = threading.Event()  # set after every commit
        self._faults: dict[str, list[int]] = defaultdict(list)
        self._lock = threading.RLock()
        self.server = Server(("127.0.0.1", 0), handler(self))
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, args=(0.05,))
        self._thread.daemon = True
        self._thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def fail(self, endpoint: str, status: int = 429, times: int = 1) -> None:
        self._faults[endpoint] += [status] * times

    def files(self, repo: str, branch: str = "main") -> dict[str, bytes]:
        with self._lock:
            return dict(self.repos[repo].branches[branch])

    def commits(self, repo: str) -> list[dict]:
        with self._lock:
            return list(self.repos[repo].commits)

    # ---- request handling ---------------------------------------------------------------
    def handle(self, h: BaseHTTPRequestHandler, method: str) -> None:
        url = urlparse(h.path)
        path, query = unquote(url.path), parse_qs(url.query)
        body = read_body(h)
        endpoint, args = route(method, path)
        self.auth[endpoint].add(h.headers.get("authorization", ""))
        if endpoint is None:
            return send(h, 404, {"error": f"not served by the local hub: {method} {path}"})
        with self._lock:
            self.calls[endpoint] += 1
            fault = self._faults[endpoint].pop(0) if self._faults[endpoint] else None
        if self.delay.get(endpoint):
            time.sleep(self.delay[endpoint])
        if fault is not None:
            return send(h, fault, {"error": f"injected {fault}"}, {"Retry-After": "0"})
        getattr(self, f"_{endpoint}")(h, body, query, *args)

    def _repo(self, h, repo: str, branch: str | None = None):
        r = self.repos.get(repo)
        if r is None:
            send(h, 404, {"error": "Repository not found"}, {"X-Error-Code": "RepoNotFound"})
            return None
        if branch is not None and branch not in r.branches:
            send(h, 404, {"error": "Invalid rev id"}, {"X-Error-Code": "RevisionNotFound"})
            return None
        return r

    def _create(self, h, body, query) -> None:
        req = json.loads(body)
        repo = f"{req['organization']}/{req['name']}"
        with self._lock:
            exists = repo in self.repos
            if not exists:
                self.repos[repo] = Repo(private=req.get("visibility") == "private")
        url = {"url": f"{self.url}/datasets/{repo}", "name": repo}
        if exists:  # the Hub's 409 carries the url too (create_repo(exist_ok=True) reads it)
            return send(h, 409, {"error": "You already created this dataset repo", **url})
        send(h, 200, url)

    def _branch(self, h, body, query, repo, branch) -> None:
        with self._lock:
            r = self._repo(h, repo)
            if r is None:
                return
            if branch in r.branches:
                return send(h, 409, {"error": "Reference already exists"})
            r.branches[branch] = dict(r.branches["main"])
        send(h, 200, {})

    def _info(self, h, body, query, repo, branch="main") -> None:
        with self._lock:
            r = self._repo(h, repo, branch)
            if r is None:
                return
            sha = _head(r, branch)
            files = sorted(r.branches[branch])
        send(
            h,
            200,
            {
                "id": repo,
                "sha": sha,
                "private": r.private,
                "siblings": [{"rfilename": p} for p in files],
            },
        )

    def _validate_yaml(self, h, body, query) -> None:
        text = json.loads(body)["content"]
        self.yaml.append(yaml.safe_load(text.split("---")[1]))
        send(h, 200, {"errors": [], "warnings": []})

    def _preupload(self, h, body, query, repo, branch) -> None:
        with self._lock:
            r = self._repo(h, repo, branch)
            if r is None:
                return
            have = r.branches[branch]
            out = []
            for f in json.loads(body)["files"]:
                lfs = is_lfs(f["path"], f["size"])
                old = have.get(f["path"])
                oid = None if old is None else _oid(old, lfs)
                out.append(
                    {
                        "path": f["path"],
                        "uploadMode": "lfs" if lfs else "regular",
                        "shouldIgnore": False,
                        "oid": oid,
                    }
                )
        send(h, 200, {"files": out, "commitOid": "0" * 40})

    def _lfs_batch(self, h, body, query, repo) -> None:
        req = json.loads(body)
        if "basic" not in req.get("transfers", ["basic"]):
            return send(h, 422, {"message": "only the basic transfer is served"})
        objects = []
        for o in req["objects"]:
            item = {"oid": o["oid"], "size": o["size"]}
            with self._lock:
                stored = o["oid"] in self.lfs
            if not stored:
                item["actions"] = {
                    "upload": {"href": f"{self.url}/lfs/{o['oid']}?size={o['size']}"},
                    "verify": {"href": f"{self.url}/lfs/verify"},
                }
            objects.append(item)
        send(
            h, 200, {"transfer": "basic", "objects": objects}, ctype="application/vnd.git-lfs+json"
        )

    def _lfs_upload(self, h, body, query, oid) -> None:
        if hashlib.sha256(body).hexdigest() != oid or str(len(body)) != query["size"][0]:
            return send(h, 400, {"error": "content does not match its oid / size"})
        with self._lock:
            self.lfs[oid] = body
        send(h, 200, {})

    def _lfs_verify(self, h, body, query) -> None:
        req = json.loads(body)
        ok = self.lfs.get(req["oid"]) is not None and len(self.lfs[req["oid"]]) == req["size"]
        send(h, 200 if ok else 404, {})

    def _commit(self, h, body, query, repo, branch) -> None:
        lines = [json.loads(x) for x in body.decode().splitlines() if x.strip()]
        with self._lock:
            r = self._repo(h, repo, branch)
            if r is None:
                return
            files = dict(r.branches[branch])
            record = {"summary": lines[0]["value"]["summary"], "added": [], "deleted": []}
            for item in lines[1:]:
                key, v = item["key"], item["value"]
                if key == "file":
                    files[v["path"]] = base64.b64decode(v["content"])
                elif key == "lfsFile":
                    if v["oid"] in self.lfs:
                        files[v["path"]] = self.lfs[v["oid"]]
                    elif self.xet_cas:  # hf_xet stored it in the CAS (the Hub checks its shard)
                        files[v["path"]] = XetBlob(v["oid"], int(v["size"]))
                    else:
                        return send(h, 422, {"error": f"LFS object {v['oid']} was not uploaded"})
                elif key == "deletedFile":
                    if files.pop(v["path"], None) is None:
                        return send(h, 404, {"error": "A file with this name doesn't exist"})
                elif key == "deletedFolder":
                    prefix = v["path"].rstrip("/") + "/"
                    files = {p: b for p, b in files.items() if not p.startswith(prefix)}
                else:
                    return send(h, 400, {"error": f"unknown commit item {key}"})
                record["added" if key in ("file", "lfsFile") else "deleted"].append(v["path"])
            r.branches[branch] = files
            r.commits.append(record)
            r.heads.pop(branch, None)
            oid = _head(r, branch)
        self.committed.set()
        send(h, 200, {"commitUrl": f"{self.url}/datasets/{repo}/commit/{oid}", "commitOid": oid})

    def _entries(self, repo: Repo, branch: str, prefix: str, recursive: bool) -> list[dict]:
        files, out, dirs = repo.branches[branch], [], set()
        base = f"{prefix.rstrip('/')}/" if prefix else ""
        for p in sorted(files):
            if not p.startswith(base):
                continue
            rest = p[len(base) :]
            parts = rest.split("/")
            for k in range(1, len(parts) if recursive else min(2, len(parts))):
                dirs.add(base + "/".join(parts[:k]))
            if recursive or len(parts) == 1:
                out.append(_file_entry(p, files[p]))
        out += [{"type": "directory", "path": d, "oid": git_sha1(d.encode())} for d in sorted(dirs)]
        return out

    def _tree(self, h, body, query, repo, branch, prefix="") -> None:
        with self._lock:
            r = self._repo(h, repo, branch)
            if r is None:
                return
            recursive = query.get("recursive", ["False"])[0].lower() == "true"
            entries = self._entries(r, branch, prefix, recursive)
        if prefix and not entries and prefix not in r.branches[branch]:
            return send(h, 404, {"error": "Entry not found"}, {"X-Error-Code": "EntryNotFound"})
        start = int(query.get("cursor", ["0"])[0])
        page, headers = entries[start : start + PAGE], {}
        if start + PAGE < len(entries):
            nxt = f"{self.url}{urlparse(h.path).path}?recursive={recursive}&cursor={start + PAGE}"
            headers["Link"] = f'<{nxt}>; rel="next"'
        send(h, 200, page, headers)

    def _paths_info(self, h, body, query, repo, branch) -> None:
        form = parse_qs(body.decode())
        with self._lock:
            r = self._repo(h, repo, branch)
            if r is None:
                return
            files = r.branches[branch]
            out = []
            for p in form.get("paths", []):
                if p in files:
                    out.append(_file_entry(p, files[p]))
                elif any(f.startswith(p.rstrip("/") + "/") for f in files):
                    out.append({"type": "directory", "path": p, "oid": git_sha1(p.encode())})
        send(h, 200, out)

    def _xet_token(self, h, body, query, repo) -> None:
        if not self.xet_cas:
            return send(h, 404, {"error": "this local hub speaks no Xet"})
        exp = str(int(time.time()) + 3600)
        headers = {
            "X-Xet-Cas-Url": self.xet_cas,
            "X-Xet-Access-Token": "local",
            "X-Xet-Token-Expiration": exp,
        }
        send(h, 200, {"casUrl": self.xet_cas, "accessToken": "local", "exp": int(exp)}, headers)

    def _resolve(self, h, body, query, repo, branch, path, head=False) -> None:
        with self._lock:
            r = self._repo(h, repo, branch)
            if r is None:
                return
            data = r.branches[branch].get(path)
            sha = _head(r, branch)
        if isinstance(data, XetBlob):
            return send(h, 501, {"error": "stored in the local Xet CAS; not served"})
        if data is None:
            return send(h, 404, {"error": "Entry not found"}, {"X-Error-Code": "EntryNotFound"})
        headers = {"X-Repo-Commit": sha, "ETag": f'"{git_sha1(data)}"', "Accept-Ranges": "bytes"}
        status, chunk = 200, data
        rng = h.headers.get("range")
        if rng and rng.startswith("bytes="):
            a, _, b = rng[len("bytes=") :].partition("-")
            lo = int(a) if a else max(0, len(data) - int(b))
            hi = min(len(data) - 1, int(b)) if a and b else len(data) - 1
            status, chunk = 206, data[lo : hi + 1]
            headers["Content-Range"] = f"bytes {lo}-{hi}/{len(data)}"
        send(h, status, chunk, headers, ctype="application/octet-stream", head=head)


def _head(repo: Repo, branch: str) -> str:
    """The branch's commit oid (computed once per commit: a listing must not hash every file)."""
    if branch not in repo.heads:
        files = repo.branches[branch]
        blob = json.dumps({p: len(b) for p, b in sorted(files.items())}).encode()
        repo.heads[branch] = hashlib.sha1(blob + str(len(repo.commits)).encode()).hexdigest()
    return repo.heads[branch]


@functools.cache
def _digests(data: bytes) -> tuple[str, str]:
    """(git blob sha1, sha256) of stored content, once per object (bytes cache their hash)."""
    return git_sha1(data), hashlib.sha256(data).hexdigest()


def _oid(data: bytes | XetBlob, lfs: bool) -> str:
    """The oid preupload reports: sha256 for LFS/Xet files, the git blob sha1 otherwise."""
    if isinstance(data, XetBlob):
        return data.sha256
    return _digests(data)[1] if lfs else _digests(data)[0]


def _file_entry(path: str, data: bytes | XetBlob) -> dict:
    if isinstance(data, XetBlob):
        pointer = f"version https://git-lfs.github.com/spec/v1\noid sha256:{data.sha256}\n"
        sha1, sha256 = git_sha1(pointer.encode()), data.sha256
    else:
        sha1, sha256 = _digests(data)
    entry = {"type": "file", "path": path, "size": len(data), "oid": sha1}
    if is_lfs(path, len(data)):
        entry["lfs"] = {
            "oid": sha256,
            "size": len(data),
            "pointerSize": 134,
        }
    return entry


def hub_env(hub: LocalHub, token: str) -> dict[str, str]:
    """Environment for a subprocess that talks to ``hub`` (LFS path, online, a fake token)."""
    return {
        "HF_ENDPOINT": hub.url,
        "HF_HUB_DISABLE_XET": "1",
        "HF_HUB_OFFLINE": "0",
        "HF_TOKEN": token,
        "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    }


__all__ = ["LocalHub", "git_sha1", "hub_env"]


@contextmanager
def serving_hub(monkeypatch) -> Iterator[LocalHub]:
    """A ``LocalHub`` that ``huggingface_hub`` (HfApi, ``hf://``) talks to, as ``HF_ENDPOINT``
    would set it up; only 127.0.0.1 is reached (offline mode lifted for this test alone)."""
    from huggingface_hub import HfFileSystem, constants

    server = LocalHub()
    try:
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
        monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
        monkeypatch.setattr(constants, "ENDPOINT", server.url)
        template = server.url + "/{repo_id}/resolve/{revision}/{filename}"
        monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", template)
        monkeypatch.setenv("HF_TOKEN", "hf_fake")
        HfFileSystem.clear_instance_cache()
        yield server
    finally:
        HfFileSystem.clear_instance_cache()
        server.close()
