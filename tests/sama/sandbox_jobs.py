"""Job functions for ``test_sandbox.py``: the sandbox's child imports them by name
(``tests.sama.sandbox_jobs:<function>``), so they live outside the test module.

Legend: ``frame_HWC`` one array of ``shape`` filled with its item index.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from typing import Any

import numpy as np

from sama.errors import ErrorKind, SampleError


def arrays(ctx: Any, n: int, shape: list[int]) -> Iterator[dict]:
    """``n`` items, each an array in shared memory (child) plus a leading slice of another."""
    for i in range(n):
        frame_HWC = ctx.alloc(tuple(shape))
        frame_HWC[:] = i
        clip_THWC = ctx.alloc((4, *shape))
        clip_THWC[:] = i + 100
        yield {"i": i, "pid": os.getpid(), "frame": frame_HWC, "first": clip_THWC[:2],
               "shm": sorted(os.listdir("/dev/shm")) if os.path.isdir("/dev/shm") else []}  # fmt: skip
    ctx.alloc((8, 8))  # allocated, never yielded: removed when the job ends


def stall(ctx: Any, before: int) -> Iterator[dict]:
    """``before`` items, then a read that never returns (no ``ctx.check``)."""
    for i in range(before):
        arr = ctx.alloc((16,))
        arr[:] = i
        yield {"i": i, "arr": arr, "pid": os.getpid()}
    ctx.alloc((1024,))  # held by the stalled job: its file must still go
    time.sleep(3600)
    yield {"i": -1}


def churn(ctx: Any, n: int) -> Iterator[dict]:
    """Allocates and lets go of ``n`` buffers (shots too short for a clip), then says which
    of its shared files still exist."""
    for _ in range(n):
        buf = ctx.alloc((64, 64, 3))
        buf[:] = 1
    del buf
    mine = [f for f in os.listdir("/dev/shm") if f.startswith(f"sama-{os.getpid()}-")]
    yield {"files": mine}


def spin(ctx: Any) -> Iterator[dict]:
    """Loops between frames, checking its deadline as a decoder does."""
    while True:
        ctx.check()
        time.sleep(0.01)
    yield {}


def segfault(ctx: Any) -> Iterator[dict]:
    yield {"i": 0}
    os.kill(os.getpid(), signal.SIGSEGV)


def hog(ctx: Any, mb: int) -> Iterator[dict]:
    """Allocates ``mb`` MB (touched) and holds it."""
    block = np.ones(mb * 2**20, np.uint8)
    time.sleep(3600)
    yield {"n": int(block[0])}


def broken(ctx: Any) -> Iterator[dict]:
    yield {"i": 0}
    {}["no such key"]


def refuses(ctx: Any) -> Iterator[dict]:
    raise SampleError(ErrorKind.TOO_SHORT, "3 frames", stage="probe")
    yield {}


def pid(ctx: Any) -> Iterator[dict]:
    yield {"pid": os.getpid(), "shared": ctx.shared}
