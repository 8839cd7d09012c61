"""One build at a time per dataset root: a lease file with a heartbeat.

Two builds writing one root delete each other's in-flight files and write the same inputs
twice; ``if_exists=overwrite`` would delete a build that is still running. So a build holds
``ROOT/_state/lease.json`` for as long as it runs (either kind: clips and pairs share a root):

- taken with an exclusive create: ``O_EXCL`` on local/POSIX paths, a conditional PUT
  (``If-None-Match: *``) on S3-compatible stores; other filesystems get a create that checks
  first (documented as weaker);
- renewed by a heartbeat thread every ``ttl / 4`` seconds; released (deleted) at the end;
- a second build finds it and stops with a message naming the holder (host, pid, kind, since,
  last heartbeat). A lease is **stale** when its heartbeat is older than ``engine.lease_ttl_s``,
  or when its holder is a process on this host that no longer exists. The latter is certain
  and is taken over at once (a build killed with -9 here can be re-run); a lease stale by its
  heartbeat is replaced only with ``engine.take_over_lease=true``. Either is said on stdout.
"""

from __future__ import annotations

import contextlib
import json
import os
import posixpath
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

from pipelines.engine.root import LEASE_FILE
from pipelines.engine.writer import is_local, open_atomic, protocols
from sama.errors import ConfigError
from sama.sandbox import pid_alive


class LeaseHeld(ConfigError):
    """Another build holds the root's lease."""


def _now() -> float:
    return time.time()


class Lease:
    def __init__(self, fs: Any, root: str, kind: str, ttl_s: float, uri: str) -> None:
        self.fs, self.path, self.kind, self.ttl_s, self.uri = fs, posixpath.join(root, LEASE_FILE), kind, ttl_s, uri
        self.token = uuid.uuid4().hex
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _record(self, since: float | None = None) -> dict:
        now = _now()
        return {"token": self.token, "kind": self.kind, "host": socket.gethostname(),
                "pid": os.getpid(), "since": since or now, "heartbeat": now, "ttl_s": self.ttl_s}  # fmt: skip

    # ---- taking ------------------------------------------------------------------------
    def acquire(self, take_over: bool = False) -> None:
        self.fs.makedirs(posixpath.dirname(self.path), exist_ok=True)
        self.since = _now()
        if self._create(self._record(self.since)):
            self._start()
            return
        holder = self.read()
        if holder is None:  # released between our create and our read: try once more
            if self._create(self._record(self.since)):
                self._start()
                return
            holder = self.read() or {}
        stale, why = self.is_stale(holder)
        dead_here = stale and why.startswith("its process")  # certain: its pid is gone here
        if stale and (take_over or dead_here):
            print(f"sama build: taking over the lease on {self.uri!r} ({why})", flush=True)
            self.fs.rm(self.path)
            if self._create(self._record(self.since)):
                self._start()
                return
            holder = self.read() or holder
        raise LeaseHeld(self._message(holder, stale, why))

    def _create(self, record: dict) -> bool:
        data = json.dumps(record).encode()
        if is_local(self.fs):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                return False
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            return True
        if {"s3", "s3a"} & set(protocols(self.fs)):
            return self._s3_create(data)
        if self.fs.exists(self.path):  # weaker: check, then write
            return False
        self.fs.pipe_file(self.path, data)
        return True

    def _s3_create(self, data: bytes) -> bool:
        bucket, key = self.path.split("/", 1)
        try:
            self.fs.call_s3("put_object", Bucket=bucket, Key=key, Body=data, IfNoneMatch="*")
        except Exception as e:  # botocore's error classes come through s3fs translated
            if _precondition_failed(e):
                return False
            raise
        self.fs.invalidate_cache(posixpath.dirname(self.path))
        return True

    def read(self) -> dict | None:
        with contextlib.suppress(FileNotFoundError):
            self.fs.invalidate_cache(posixpath.dirname(self.path))
            raw = self.fs.cat_file(self.path)
            try:
                return json.loads(raw)
            except ValueError:
                return {"unreadable": True}
        return None

    def is_stale(self, holder: dict) -> tuple[bool, str]:
        age = _now() - float(holder.get("heartbeat") or 0)
        here = holder.get("host") == socket.gethostname() and isinstance(holder.get("pid"), int)
        if here and not pid_alive(holder["pid"]):
            return True, f"its process {holder['pid']} on this host is gone"
        if age > float(holder.get("ttl_s") or self.ttl_s):
            return True, f"its last heartbeat was {age:.0f}s ago"
        return False, f"last heartbeat {age:.0f}s ago"

    def _message(self, holder: dict, stale: bool, why: str) -> str:
        who = (f"a {holder.get('kind', '?')} build on host {holder.get('host', '?')} (pid "
               f"{holder.get('pid', '?')}) since {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(float(holder.get('since') or 0)))}")  # fmt: skip
        if stale:
            return (f"output {self.uri!r} is leased by {who}, but the lease is stale ({why}); "
                    "if that build is really gone, re-run with engine.take_over_lease=true")  # fmt: skip
        return (f"output {self.uri!r} is being written by {who} ({why}); wait for it to finish, "
                f"or use another output.uri (lease: {self.path})")  # fmt: skip

    # ---- holding -----------------------------------------------------------------------
    def _start(self) -> None:
        self._thread = threading.Thread(target=self._beat, name="sama-lease", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        while not self._stop.wait(max(1.0, self.ttl_s / 4)):
            with contextlib.suppress(Exception):  # a missed beat is retried at the next tick
                if not self.renew():
                    print(f"sama build: warning: lost the lease on {self.uri!r} (taken over?)",
                          flush=True)  # fmt: skip
                    return

    def renew(self) -> bool:
        """Write a new heartbeat; False if the lease is no longer ours. Written whole (temp +
        rename locally): a reader that found it half-written would count it stale."""
        holder = self.read()
        if holder is None or holder.get("token") != self.token:
            return False
        with open_atomic(self.fs, self.path) as f:
            f.write(json.dumps(self._record(self.since)).encode())
        return True

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        holder = self.read()
        if holder is not None and holder.get("token") == self.token:
            with contextlib.suppress(FileNotFoundError):
                self.fs.rm(self.path)


def _precondition_failed(e: Exception) -> bool:
    if isinstance(e, FileExistsError):  # s3fs's translation of 412 Precondition Failed
        return True
    text = f"{type(e).__name__} {e}"
    return any(s in text for s in ("PreconditionFailed", "412", "ConditionalRequestConflict"))


@contextlib.contextmanager
def hold(fs: Any, root: str, kind: str, ttl_s: float, uri: str, take_over: bool) -> Iterator[Lease]:
    lease = Lease(fs, root, kind, ttl_s, uri)
    lease.acquire(take_over)
    try:
        yield lease
    finally:
        lease.release()
