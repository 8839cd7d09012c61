"""Run one input's decode work in a child process that can be stopped: time, memory, crashes.

Real-world footage includes files that make a decoder stall (a remote read that never
returns), loop, crash (a segfault in FFmpeg) or allocate without bound (a 16K frame). A Python
thread cannot be stopped and a crashed decoder takes its Ray worker with it, so the decode
stages run each job here:

- ``run_job(target, kwargs, budget)`` calls the generator function ``target`` (a
  ``"module:function"`` string; it takes a ``JobContext`` and ``**kwargs``) in a long-lived child
  process (one per worker, started on first use, restarted after a kill) and yields what it
  yields, as it yields it;
- the parent waits with a deadline: past ``seconds`` (+ a grace) the child is killed and
  ``SampleError(timeout)`` raised; above ``max_memory_mb`` resident it is killed and
  ``SampleError(too_large)`` raised; if it dies (a signal) ``SampleError(decode_error)`` names
  the signal. Items already yielded stay with the caller (the clips made before the stall);
- inside, ``ctx.check()`` raises ``timeout`` cooperatively (between frames), and
  ``ctx.alloc(shape)`` gives arrays in shared memory (``/dev/shm``): an item's arrays reach the
  parent as memory maps, not through the pipe, so a 100 MB clip is never copied on the way;
- ``SampleError`` raised by the job is re-raised in the parent as is; any other exception
  becomes ``SampleError(internal_error)`` naming its type, message and last frame.

``isolation="inline"`` runs the same function in this process (for inputs only it can see,
e.g. fsspec ``memory://``, and for debugging): same context, the deadline checked between
frames only. The protocol is pickle over a private pipe between our own two processes; nothing
from an input file is unpickled.
"""

from __future__ import annotations

import contextlib
import glob
import importlib
import mmap
import os
import pickle
import select
import signal
import struct
import subprocess
import sys
import time
import traceback
import weakref
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from sama.errors import ErrorKind, SampleError

SHM_DIR = "/dev/shm" if os.path.isdir("/dev/shm") else None
GRACE_S = 5.0  # the child's own deadline check gets this long before the kill
POLL_S = 0.2


def pid_alive(pid: int) -> bool:
    """Whether a process of this machine still runs (one of another user counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass(frozen=True)
class Budget:
    seconds: float
    max_memory_mb: int = 8192
    isolation: str = "process"  # or "inline"


@dataclass(frozen=True)
class ShmRef:
    path: str
    shape: tuple[int, ...]
    dtype: str
    offset: int = 0  # bytes into the mapping where the array starts (a slice of a buffer)


class JobContext:
    """What a job function gets: its deadline and an allocator for the arrays it yields."""

    def __init__(self, deadline: float, stage: str, shared: bool) -> None:
        self.deadline, self.stage, self.shared = deadline, stage, shared
        # id(mmap) -> (path, data address) of shared arrays not yielded yet. Keyed by the
        # mapping, which every view of the array keeps alive, and dropped (file unlinked) when
        # the mapping dies: an id is never that of a dead object, and a buffer the job let go
        # of (a shot too short for a clip) leaves /dev/shm at once, not at the end of the job
        self._pending: dict[int, tuple[str, int]] = {}
        self._n = 0

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def check(self) -> None:
        """Raise ``timeout`` once the deadline has passed (call between frames)."""
        if time.monotonic() > self.deadline:
            raise SampleError(ErrorKind.TIMEOUT, "took longer than budget.max_seconds_per_input",
                              stage=self.stage)  # fmt: skip

    def alloc(self, shape: tuple[int, ...], dtype: Any = np.uint8) -> np.ndarray:
        """A zeroed array; in a child process it lives in shared memory."""
        if not (self.shared and SHM_DIR):
            return np.zeros(shape, dtype)
        nbytes = max(1, int(np.prod(shape)) * np.dtype(dtype).itemsize)
        path = os.path.join(SHM_DIR, f"sama-{os.getpid()}-{self._n}")
        self._n += 1
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
        try:
            os.ftruncate(fd, nbytes)
            buf = mmap.mmap(fd, nbytes)
        finally:
            os.close(fd)
        arr = np.frombuffer(buf, dtype=dtype, count=int(np.prod(shape))).reshape(shape)
        self._pending[id(buf)] = (path, arr.__array_interface__["data"][0])
        weakref.finalize(buf, self._drop, id(buf))
        return arr

    def _drop(self, key: int) -> None:
        """The mapping died: unlink its file unless it was yielded (the parent unlinks those)."""
        entry = self._pending.pop(key, None)
        if entry is not None:
            with contextlib.suppress(OSError):
                os.unlink(entry[0])

    def export(self, item: Any) -> Any:
        """``item`` with its shared arrays replaced by references (child side)."""
        if isinstance(item, dict):
            return {k: self.export(v) for k, v in item.items()}
        if isinstance(item, list | tuple):
            return type(item)(self.export(v) for v in item)
        if isinstance(item, np.ndarray):
            found = self._shared_root(item)
            if found is not None:  # the array, or a contiguous slice of it (a clip's frames)
                key, offset = found
                path, _ = self._pending.pop(key)
                return ShmRef(path, tuple(item.shape), item.dtype.str, offset)
        return item

    def _shared_root(self, arr: np.ndarray) -> tuple[int, int] | None:
        """(key, byte offset) of the shared mapping ``arr`` lies in (C-contiguous), or None."""
        base: Any = arr
        while isinstance(base, np.ndarray):
            base = base.base
        if isinstance(base, memoryview):  # np.frombuffer keeps a memoryview of the mapping
            base = base.obj
        entry = self._pending.get(id(base)) if isinstance(base, mmap.mmap) else None
        if entry is None or not arr.flags.c_contiguous:
            return None
        offset = arr.__array_interface__["data"][0] - entry[1]
        return (id(base), offset) if offset >= 0 and offset + arr.nbytes <= len(base) else None

    def discard(self) -> None:
        """Remove the shared files of arrays that were never yielded (child side)."""
        for path, _ in self._pending.values():
            with contextlib.suppress(OSError):
                os.unlink(path)
        self._pending.clear()


def _import_refs(item: Any) -> Any:
    """Parent side: references back into arrays (read-only memory maps; the file is unlinked
    at once, the mapping lives as long as the array)."""
    if isinstance(item, dict):
        return {k: _import_refs(v) for k, v in item.items()}
    if isinstance(item, list | tuple):
        return type(item)(_import_refs(v) for v in item)
    if isinstance(item, ShmRef):
        with open(item.path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            buf = mmap.mmap(f.fileno(), size, access=mmap.ACCESS_READ)
        os.unlink(item.path)
        count = int(np.prod(item.shape))
        arr = np.frombuffer(buf, dtype=np.dtype(item.dtype), count=count, offset=item.offset)
        return arr.reshape(item.shape)
    return item


def _describe(e: BaseException) -> str:
    frames = traceback.extract_tb(e.__traceback__)
    where = f" (at {frames[-1].filename.rsplit('/', 1)[-1]}:{frames[-1].lineno} in {frames[-1].name})" if frames else ""
    text = (str(e).strip().splitlines() or [""])[0][:300]
    return f"{type(e).__name__}: {text}{where}"


def _target(name: str):
    module, func = name.split(":")
    return getattr(importlib.import_module(module), func)


# ---- framing: 4-byte length + pickle, over a private pipe ---------------------------------
def _send(fd: int, obj: Any) -> None:
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    view = memoryview(struct.pack("<Q", len(data)) + data)
    while view:
        view = view[os.write(fd, view) :]


def _recv_exact(fd: int, n: int) -> bytes:
    parts, got = [], 0
    while got < n:
        chunk = os.read(fd, n - got)
        if not chunk:
            raise EOFError
        parts.append(chunk)
        got += len(chunk)
    return b"".join(parts)


def _recv(fd: int) -> Any:
    (n,) = struct.unpack("<Q", _recv_exact(fd, 8))
    return pickle.loads(_recv_exact(fd, n))


# ---- the child -----------------------------------------------------------------------------
def child_main(fd_in: int, fd_out: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when we stop
    while True:
        try:
            target, kwargs, deadline, stage = _recv(fd_in)
        except EOFError:
            return
        ctx = JobContext(deadline, stage, shared=True)
        try:
            for item in _target(target)(ctx, **kwargs):
                _send(fd_out, ("item", ctx.export(item)))
            _send(fd_out, ("done", None))
        except SampleError as e:
            _send(fd_out, ("sample_error", (e.kind.value, e.message, e.stage)))
        except Exception as e:  # noqa: BLE001 - reported to the parent as internal_error
            _send(fd_out, ("exception", _describe(e)))
        finally:
            ctx.discard()


class Sandbox:
    """A child process running jobs one at a time (see the module docstring)."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen | None = None
        self.fd_to = self.fd_from = -1

    def _start(self) -> None:
        _remove_stale_shm()
        req_r, req_w = os.pipe()
        res_r, res_w = os.pipe()
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
        code = f"import sama.sandbox as s; s.child_main({req_r}, {res_w})"
        self.proc = subprocess.Popen([sys.executable, "-c", code], pass_fds=(req_r, res_w),
                                     env=env, stdin=subprocess.DEVNULL)  # fmt: skip
        os.close(req_r)
        os.close(res_w)
        self.fd_to, self.fd_from = req_w, res_r

    def stop(self) -> None:
        if self.proc is None:
            return
        pid = self.proc.pid
        with contextlib.suppress(ProcessLookupError):
            self.proc.kill()
        self.proc.wait()
        for fd in (self.fd_to, self.fd_from):
            with contextlib.suppress(OSError):
                os.close(fd)
        self.proc = None
        for path in glob.glob(os.path.join(SHM_DIR or "/nonexistent", f"sama-{pid}-*")):
            with contextlib.suppress(OSError):
                os.unlink(path)

    def run(self, target: str, kwargs: dict, budget: Budget, stage: str) -> Iterator[Any]:
        if self.proc is None or self.proc.poll() is not None:
            self.stop()
            self._start()
        deadline = time.monotonic() + budget.seconds
        try:
            _send(self.fd_to, (target, kwargs, deadline, stage))
        except BrokenPipeError:  # the child died between two jobs
            self.stop()
            self._start()
            _send(self.fd_to, (target, kwargs, deadline, stage))
        finished = False
        try:
            while True:
                kind, payload = self._wait(deadline + GRACE_S, budget, stage)
                if kind == "item":
                    yield _import_refs(payload)
                    continue
                finished = True
                if kind == "done":
                    return
                if kind == "sample_error":
                    raise SampleError(payload[0], payload[1], stage=payload[2] or stage)
                raise SampleError(ErrorKind.INTERNAL_ERROR, payload, stage=stage)
        finally:
            if not finished:  # abandoned mid-job (or killed): the child may still be sending
                self.stop()

    def _wait(self, hard_deadline: float, budget: Budget, stage: str) -> Any:
        while True:
            left = hard_deadline - time.monotonic()
            if left <= 0:
                self.stop()
                raise SampleError(ErrorKind.TIMEOUT, f"stopped after {budget.seconds:g}s (budget."
                                  "max_seconds_per_input): the read or decode stalled", stage=stage)  # fmt: skip
            ready, _, _ = select.select([self.fd_from], [], [], min(POLL_S, left))
            if ready:
                try:
                    return _recv(self.fd_from)
                except EOFError:
                    raise self._died(stage) from None
            if self.proc.poll() is not None:
                raise self._died(stage)
            rss = _rss_mb(self.proc.pid)
            if rss > budget.max_memory_mb:
                self.stop()
                raise SampleError(ErrorKind.TOO_LARGE, f"decoding used {rss:.0f} MB, more than "
                                  f"budget.max_memory_mb={budget.max_memory_mb}", stage=stage)  # fmt: skip

    def _died(self, stage: str) -> SampleError:
        code = self.proc.wait() if self.proc else None
        self.stop()
        what = f"signal {signal.Signals(-code).name}" if code and code < 0 else f"exit code {code}"
        return SampleError(ErrorKind.DECODE_ERROR, f"the decoding process died ({what}): the "
                           "decoder crashed on this file", stage=stage)  # fmt: skip


def _rss_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/statm") as f:
            pages = int(f.read().split()[1])
    except (OSError, ValueError, IndexError):
        return 0.0
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def _remove_stale_shm() -> None:
    """Shared-memory files of children that are gone (a worker killed mid-job)."""
    for path in glob.glob(os.path.join(SHM_DIR or "/nonexistent", "sama-*-*")):
        try:
            pid = int(os.path.basename(path).split("-")[1])
        except (IndexError, ValueError):
            continue
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            with contextlib.suppress(OSError):
                os.unlink(path)
        except PermissionError:
            continue


_SANDBOX: Sandbox | None = None


def run_job(target: str, kwargs: dict, budget: Budget, stage: str) -> Iterator[Any]:
    """Run ``target(ctx, **kwargs)`` under ``budget``; yields its items (module docstring)."""
    global _SANDBOX
    if budget.isolation == "inline":
        ctx = JobContext(time.monotonic() + budget.seconds, stage, shared=False)
        try:
            yield from _target(target)(ctx, **kwargs)
        except SampleError:
            raise
        except Exception as e:  # noqa: BLE001 - same contract as the child
            raise SampleError(ErrorKind.INTERNAL_ERROR, _describe(e), stage=stage) from e
        return
    if _SANDBOX is None:
        _SANDBOX = Sandbox()
    yield from _SANDBOX.run(target, kwargs, budget, stage)
