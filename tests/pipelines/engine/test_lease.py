"""``engine/lease.py``: one build per root; stale leases only taken over when asked (no Ray)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import fsspec
import pytest

from pipelines.engine.lease import Lease, LeaseHeld, hold
from pipelines.engine.root import LEASE_FILE


@pytest.fixture(params=["file", "memory"])
def where(request, tmp_path):
    """(fs, root) on a local folder and on fsspec memory:// (an object-store-like fs)."""
    if request.param == "file":
        yield fsspec.filesystem("file"), str(tmp_path / "root")
        return
    fs = fsspec.filesystem("memory")
    root = f"/lease_test_{tmp_path.name}"
    yield fs, root
    if fs.exists(root):
        fs.rm(root, recursive=True)


def _lease(fs, root, kind: str = "clips", ttl_s: float = 120.0) -> Lease:
    return Lease(fs, root, kind, ttl_s, "out://root")


def _record(fs, root) -> dict:
    return json.loads(fs.cat_file(f"{root}/{LEASE_FILE}"))


def _plant(fs, root, **fields) -> None:
    """A lease file left by some other build."""
    record = {"token": "other", "kind": "pairs", "host": socket.gethostname(), "pid": 1,
              "since": time.time() - 60, "heartbeat": time.time(), "ttl_s": 120.0} | fields  # fmt: skip
    fs.makedirs(f"{root}/_state", exist_ok=True)
    fs.pipe_file(f"{root}/{LEASE_FILE}", json.dumps(record).encode())


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_second_lease_on_the_same_root_is_refused_naming_the_holder(where):
    fs, root = where
    first = _lease(fs, root, kind="clips")
    first.acquire()
    try:
        with pytest.raises(LeaseHeld) as e:
            _lease(fs, root, kind="pairs").acquire(take_over=True)  # a live lease: never
        msg = str(e.value)
        assert f"a clips build on host {socket.gethostname()} (pid {os.getpid()})" in msg
        assert "'out://root' is being written by" in msg and "another output.uri" in msg
        assert _record(fs, root)["token"] == first.token  # the first is unharmed
    finally:
        first.release()


def test_a_dead_pid_on_this_host_is_taken_over_at_once_and_said(where, capsys):
    """Its holder is certainly gone (a build killed with -9 here): the next build takes the
    lease without being asked, and says so."""
    fs, root = where
    pid = _dead_pid()
    _plant(fs, root, pid=pid)
    mine = _lease(fs, root)
    mine.acquire()
    try:
        rec = _record(fs, root)
        assert (rec["token"], rec["pid"], rec["kind"]) == (mine.token, os.getpid(), "clips")
        out = capsys.readouterr().out
        assert f"taking over the lease on 'out://root' (its process {pid} on this host is gone)" in out
    finally:
        mine.release()


def test_an_old_heartbeat_or_an_unreadable_lease_is_stale(where):
    fs, root = where
    _plant(fs, root, host="elsewhere", pid=4242, heartbeat=time.time() - 500, ttl_s=120.0)
    with pytest.raises(LeaseHeld, match=r"stale \(its last heartbeat was 50\ds ago\)"):
        _lease(fs, root).acquire()
    _plant(fs, root, host="elsewhere", pid=4242, heartbeat=time.time() - 10)
    with pytest.raises(LeaseHeld, match=r"host elsewhere \(pid 4242\).*last heartbeat 1\ds ago"):
        _lease(fs, root).acquire(take_over=True)  # on another host and alive: never taken
    fs.pipe_file(f"{root}/{LEASE_FILE}", b"{not json")
    with pytest.raises(LeaseHeld, match="stale"):
        _lease(fs, root).acquire()
    with hold(fs, root, "clips", 120.0, "out://root", take_over=True) as lease:
        assert _record(fs, root)["token"] == lease.token
    assert not fs.exists(f"{root}/{LEASE_FILE}")


def test_release_removes_the_lease_but_never_someone_elses(where):
    fs, root = where
    lease = _lease(fs, root)
    lease.acquire()
    lease.release()
    assert not fs.exists(f"{root}/{LEASE_FILE}")
    again = _lease(fs, root)
    again.acquire()  # free again
    _plant(fs, root, token="taker")  # taken over meanwhile (say it was thought stale)
    again.release()
    assert _record(fs, root)["token"] == "taker"
    with pytest.raises(RuntimeError), hold(fs, root + "/2", "clips", 120.0, "u", False):
        raise RuntimeError("the build failed")
    assert not fs.exists(f"{root}/2/{LEASE_FILE}")  # released on the way out


def test_the_heartbeat_renews_the_lease(where):
    fs, root = where
    lease = _lease(fs, root, ttl_s=2.0)  # beats every max(1 s, ttl / 4)
    lease.acquire()
    try:
        first = _record(fs, root)
        deadline = time.monotonic() + 5
        while _record(fs, root)["heartbeat"] == first["heartbeat"] and time.monotonic() < deadline:
            time.sleep(0.1)
        renewed = _record(fs, root)
        assert renewed["heartbeat"] > first["heartbeat"]
        assert (renewed["since"], renewed["token"]) == (first["since"], lease.token)
        assert lease.is_stale(renewed) == (False, "last heartbeat 0s ago")
    finally:
        lease.release()


def test_a_renewal_is_never_seen_half_written(tmp_path):
    """Another build reading the lease while it is renewed must never find it unreadable: an
    unreadable lease counts as stale and would be taken over with take_over_lease=true."""
    import threading

    fs = fsspec.filesystem("file")
    lease = _lease(fs, str(tmp_path))
    lease.acquire()
    seen, stop = [], threading.Event()

    def reader():
        other = _lease(fs, str(tmp_path))
        while not stop.is_set():
            seen.append(other.read())

    t = threading.Thread(target=reader)
    t.start()
    try:
        for _ in range(50):
            assert lease.renew()
    finally:
        stop.set()
        t.join()
        lease.release()
    assert seen and all(s is not None and "unreadable" not in s for s in seen)
    assert {s["token"] for s in seen} == {lease.token}
