"""A node-local cache of remote shards and of the shard index (``data.cache_dir``).

Training from ``hf://datasets/ORG/NAME`` or ``s3://...`` reads each row group many times (every
epoch, every rank that draws it). With ``data.cache_dir`` a shard is fetched whole, once per
node, on its first use; every rank and process of the node then reads the local copy, and a
resumed run finds it there. The cache is bounded (``data.cache_max_gb``): beyond it, the least
recently used shards are deleted (a reader that has a shard open keeps reading it; one that
finds it gone fetches it again).

Safe for several processes: a fetch goes to a temporary file that is renamed into place
(readers never see half a shard), under an exclusive ``flock`` per shard (one process fetches,
the others wait and reuse it); eviction runs under its own lock. A cached shard is keyed by its
URI and the version the store reports (size + ETag / LFS sha256 / mtime), so a changed shard is
fetched again.

The shard index (footers + small columns of every shard, ``trainer/shard_index.py``) is cached
there too: the first rank of a node builds it, the others read it (JSON + ``.npy`` arrays,
never pickle), keyed by the listing, the sources and the loader's limits.

POSIX only (``fcntl``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import posixpath
import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from sama.sandbox import pid_alive

INDEX_FORMAT = 1


@contextlib.contextmanager
def locked(path: Path, blocking: bool = True) -> Iterator[bool]:
    """An exclusive ``flock`` on ``path``; yields False at once if ``blocking`` is off and
    another process holds it."""
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def version_of(info: dict[str, Any]) -> str:
    """What identifies a stored object's content, from ``fs.info()``."""
    lfs = info.get("lfs")
    lfs_sha = getattr(lfs, "sha256", None) or (lfs.get("sha256") if isinstance(lfs, dict) else None)
    for v in (
        info.get("ETag"),
        info.get("etag"),
        lfs_sha,
        info.get("blob_id"),
        info.get("mtime"),
        info.get("LastModified"),
        info.get("last_modified"),
    ):
        if v:
            return str(v)
    return ""


class ShardCache:
    """Local copies of remote shards under ``root/shards`` (at most ``max_bytes``)."""

    def __init__(self, root: str | Path, max_bytes: int) -> None:
        self.root = Path(root).expanduser()
        self.max_bytes = max_bytes
        self.shards = self.root / "shards"
        self.shards.mkdir(parents=True, exist_ok=True)
        self.fetched = 0  # shards this process fetched (tests, logs)

    def _key(self, uri: str, size: int, version: str) -> str:
        digest = hashlib.sha256(f"{uri}\0{size}\0{version}".encode()).hexdigest()[:24]
        return f"{digest}-{posixpath.basename(uri)}"

    def local(self, fs: Any, path: str, uri: str, size: int, version: str) -> str:
        """The local path of the shard, fetched first if this node has no copy."""
        key = self._key(uri, size, version)
        dst = self.shards / key
        if self._valid(dst, size):
            return str(dst)
        with locked(self.root / "locks" / f"{key}.lock"):
            if not self._valid(dst, size):
                self._fetch(fs, path, dst, size)
        self.evict(keep=dst)
        return str(dst)

    @staticmethod
    def _valid(dst: Path, size: int) -> bool:
        try:
            if dst.stat().st_size != size:
                return False
            os.utime(dst)  # recently used
            return True
        except FileNotFoundError:
            return False

    def _fetch(self, fs: Any, path: str, dst: Path, size: int) -> None:
        tmp = dst.with_name(f".tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}-{dst.name}")
        try:
            with fs.open(path, "rb") as src, open(tmp, "wb") as out:
                shutil.copyfileobj(src, out, 1 << 22)
            got = tmp.stat().st_size
            if got != size:
                raise OSError(f"fetched {got} bytes of {path}, expected {size}")
            os.replace(tmp, dst)
            self.fetched += 1
        finally:
            tmp.unlink(missing_ok=True)

    def evict(self, keep: Path | None = None) -> None:
        """Delete the least recently used shards until the cache fits; drop temporary files
        of processes that died mid-fetch."""
        with locked(self.root / "evict.lock", blocking=False) as got:
            if not got:
                return
            files = []
            for p in self.shards.iterdir():
                if p.name.startswith(".tmp-"):
                    pid = p.name.split("-")[1]
                    if pid.isdigit() and not pid_alive(int(pid)):
                        p.unlink(missing_ok=True)
                    continue
                with contextlib.suppress(FileNotFoundError):
                    st = p.stat()
                    files.append((st.st_mtime, st.st_size, p))
            total = sum(size for _, size, _ in files)
            for _, size, p in sorted(files):
                if total <= self.max_bytes:
                    break
                if p != keep:
                    p.unlink(missing_ok=True)
                    total -= size

    # ---- the shard index ------------------------------------------------------------------
    def index_paths(self, key: str) -> tuple[Path, Path]:
        base = self.root / "index" / key
        return base.with_suffix(".json"), base.with_suffix(".npz")

    def load_index(self, key: str) -> tuple[list[dict], np.ndarray, np.ndarray] | None:
        meta_path, arr_path = self.index_paths(key)
        try:
            meta = json.loads(meta_path.read_text())
            with np.load(arr_path, allow_pickle=False) as arrays:
                vec, keep = arrays["vec"], arrays["keep"]
        except (FileNotFoundError, ValueError, KeyError, OSError):
            return None
        if meta.get("format") != INDEX_FORMAT or len(vec) != sum(meta["rows"]):
            return None
        return meta["shards"], vec, keep

    def store_index(self, key: str, shards: list[dict], vec: np.ndarray, keep: np.ndarray) -> None:
        meta_path, arr_path = self.index_paths(key)
        meta_path.parent.mkdir(parents=True, exist_ok=True)
        tag = f".tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        tmp_arr = arr_path.with_name(arr_path.name + tag + ".npz")
        tmp_meta = meta_path.with_name(meta_path.name + tag)
        np.savez(tmp_arr, vec=vec, keep=keep)
        rows = [int(s["rows"]) for s in shards]
        tmp_meta.write_text(
            json.dumps(
                {"format": INDEX_FORMAT, "rows": rows, "shards": shards, "written_at": time.time()}
            )
        )
        os.replace(tmp_arr, arr_path)  # arrays first: the JSON says the index is complete
        os.replace(tmp_meta, meta_path)
