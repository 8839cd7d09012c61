"""A real multi-node Ray cluster on this machine, for tests and benchmarks.

``ray start --head`` plus ``nodes - 1`` more ``ray start --address`` nodes: separate raylets,
object stores and worker pools, each in its own process group so exactly it can be killed.
Token authentication stays on (``RAY_AUTH_MODE=token``): the nodes and a build started with
``--ray-address`` share the token Ray keeps in ``~/.ray/auth_token``.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

RAY_ENV = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_USAGE_STATS_ENABLED": "0"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pinned(cores: set[int] | None) -> Callable[[], None] | None:
    """A ``preexec_fn`` that confines a child (and all it starts) to ``cores`` (None: no pin)."""
    if not cores:
        return None
    return lambda: os.sched_setaffinity(0, cores)


def _start(args: list[str], log: Path, cpus: int, store_bytes: int,
           cores: set[int] | None) -> subprocess.Popen:  # fmt: skip
    ray_bin = str(Path(sys.executable).with_name("ray"))
    common = [f"--num-cpus={cpus}", f"--object-store-memory={store_bytes}", "--block",
              "--dashboard-agent-listen-port=0", "--disable-usage-stats"]  # fmt: skip
    return subprocess.Popen([ray_bin, "start", *args, *common], stdout=log.open("w"),
                            stderr=subprocess.STDOUT, start_new_session=True, env=RAY_ENV,
                            preexec_fn=pinned(cores))  # fmt: skip


def _wait_started(log: Path, proc: subprocess.Popen, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while "Ray runtime started" not in log.read_text():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"ray start did not come up:\n{log.read_text()[-2000:]}")
        time.sleep(0.2)


@contextmanager
def local_cluster(
    log_dir: Path,
    nodes: int = 2,
    cpus: int = 1,
    store_bytes: int = 100_000_000,
    cores: list[set[int]] | None = None,
) -> Iterator[tuple[str, list[subprocess.Popen]]]:
    """Yields ``(address, node processes)`` (the head first); every node is killed on exit.

    ``cores[i]``: the cores node ``i`` (its raylet, workers and their children) may run on, so
    that a node's ``--num-cpus`` is also what it can really use (a benchmark of 2 nodes vs 1
    on one machine); None: every core, for each node."""
    port = free_port()
    # A temp dir of its own: `ray start` writes its address to TEMP/ray_current_cluster, and a
    # plain ray.init() anywhere on this machine would otherwise join this cluster. Short, for
    # the Unix socket paths under it.
    temp = tempfile.mkdtemp(prefix="sr", dir="/tmp")
    procs: list[subprocess.Popen] = []
    try:
        head = ["--head", f"--port={port}", "--include-dashboard=false", f"--temp-dir={temp}"]
        for i in range(nodes):
            log = Path(log_dir) / f"ray-node{i}.log"
            procs.append(_start(head if i == 0 else [f"--address=127.0.0.1:{port}"], log, cpus,
                                store_bytes, cores[i] if cores else None))  # fmt: skip
            _wait_started(log, procs[-1])
        yield f"127.0.0.1:{port}", procs
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
            p.wait()
        shutil.rmtree(temp, ignore_errors=True)
