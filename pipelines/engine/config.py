"""The engine's config sections: how a build runs, where it writes, and what one input may cost.

These are the sections every recipe shares (``BuildConfig`` in ``pipelines/config.py`` composes
them with the recipes' own): ``output`` (the root, shard and row-group sizes, ``if_exists``),
``engine`` (Ray, per-stage resources, fusion, retries, the error-rate limit, the lease) and
``budget`` (the time, pixel, frame and memory bounds of one input). Nothing here names a record
kind.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from sama.config import check


@dataclass
class OutputConfig:
    """``ROOT/<kind>/*.parquet``, ``ROOT/errors/*.parquet``, ``ROOT/_state/`` (resume, lease)."""

    uri: str = ""
    # shard size target: a write task gathers about this many bytes of rows (estimated from the
    # models' tensor sizes, see the recipe's ``row_bytes``) and writes them as one shard
    shard_size_mb: float = 512.0
    row_group_rows: int = 32  # rows of one bucket per row group, at most
    # and at most this many uncompressed bytes per row group: the Hub's dataset viewer reads
    # row groups whole and gives up above ~286 MiB, so stay well under it
    row_group_mb: float = 128.0
    max_rows_per_shard: int = 4096  # cap on rows per shard (small rows: errors, images)
    # what to do when ROOT already holds a build of this kind: continue it (same fingerprint
    # only), delete it first (refused while another build holds the lease), or refuse
    if_exists: Literal["resume", "overwrite", "error"] = "resume"
    storage_options: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> None:
        check(bool(self.uri), "output.uri is empty; set output.uri=DIR (any fsspec URI)")
        check(self.shard_size_mb > 0, f"output.shard_size_mb={self.shard_size_mb} must be > 0")
        check(self.row_group_rows >= 1, "output.row_group_rows must be >= 1 (e.g. 32)")
        check(self.row_group_mb > 0, f"output.row_group_mb={self.row_group_mb} must be > 0")
        check(self.max_rows_per_shard >= 1, "output.max_rows_per_shard must be >= 1")


@dataclass
class StageResources:
    """How one stage runs on Ray: parallel tasks/actors, rows per call, resources per worker."""

    concurrency: int = 0  # tasks: max in flight (0 = as many as fit); actors: pool size (0 = 1)
    batch_size: int = 1
    num_cpus: float = 1.0
    num_gpus: float = 0.0
    memory_mb: int = 0  # declared to Ray per task/actor (0 = undeclared)

    def validate(self) -> None:
        check(self.concurrency >= 0, f"concurrency={self.concurrency} must be >= 0")
        check(self.batch_size >= 1, f"batch_size={self.batch_size} must be >= 1")
        check(self.num_cpus >= 0 and self.num_gpus >= 0, "num_cpus and num_gpus must be >= 0")
        check(self.memory_mb >= 0, f"memory_mb={self.memory_mb} must be >= 0")


def _task(memory_mb: int = 0) -> StageResources:
    return StageResources(memory_mb=memory_mb)


def _actor(batch_size: int = 4) -> StageResources:
    return StageResources(concurrency=1, batch_size=batch_size)


@dataclass
class BudgetConfig:
    """What one input may cost. An input over a bound becomes an error row (``timeout``,
    ``too_large``) and the build goes on.

    The decode stages (probe, shots, clips; the pair probe and frame loader) run each input in a
    killable child process (``isolation=process``, ``sama.sandbox``): a read that stalls, a
    decoder that loops or crashes, or a process that outgrows ``max_memory_mb`` is stopped
    there, and the clips made before it are kept. ``inline`` runs in the worker itself (needed
    for inputs only this process can see, e.g. fsspec ``memory://``); then the time bound is
    checked between frames only.
    """

    max_seconds_per_input: float = 1800.0  # per decode stage of one input
    max_pixels: int = 4096 * 4096  # width x height of the source
    max_frames: int = 1_000_000  # frames the container announces
    max_memory_mb: int = 8192  # peak RSS of the child process decoding one input
    isolation: Literal["process", "inline"] = "process"

    def for_uri(self, uri: str) -> Any:
        """The ``sama.sandbox.Budget`` of one input (``memory://`` is only visible inline)."""
        from sama.sandbox import Budget

        inline = self.isolation == "inline" or str(uri).startswith("memory://")
        return Budget(self.max_seconds_per_input, self.max_memory_mb,
                      "inline" if inline else "process")  # fmt: skip

    def validate(self) -> None:
        check(self.max_seconds_per_input > 0, "budget.max_seconds_per_input must be > 0")
        check(self.max_pixels > 0, "budget.max_pixels must be > 0 (e.g. 16777216 = 4096x4096)")
        check(self.max_frames > 0, "budget.max_frames must be > 0")
        check(self.max_memory_mb >= 256, "budget.max_memory_mb must be >= 256")


@dataclass
class EngineConfig:
    """Ray: start a local instance (capped) or join ``ray_address``; or run in-process."""

    executor: Literal["ray", "local"] = "ray"  # local: one process, no Ray (debugging, memory://)
    ray_address: str = ""  # "" = start a local Ray; "auto" or "HOST:PORT" = join a cluster
    num_cpus: int = 0  # local Ray only; 0 = every core
    num_gpus: int = -1  # local Ray only; -1 = autodetect
    object_store_mb: int = 0  # local Ray only; 0 = Ray's default
    dashboard: bool = False  # local Ray only: start the Ray dashboard
    strict: bool = False  # check that every batch carries exactly the declared columns
    # A task whose worker dies (node lost, OOM kill) is retried and a lost actor restarted by
    # Ray Data without a limit (its default); a crash inside a decoder cannot kill a worker (the
    # decode jobs run in a sandbox process). An unexpected exception on one input is retried
    # this often in place, then becomes an
    # ``internal_error`` row (the traceback's last frame in its message)
    input_retries: int = 1
    # fraction of inputs that may fail (no rows but error rows) before `sama build` exits
    # non-zero; 1.0 = never fail the build for bad inputs
    max_error_rate: float = 1.0
    inputs_per_block: int = 1  # inputs per Ray block: small blocks balance work, retries are cheap
    # consecutive stages run as one Ray map (one process): e.g. [[cut_clips, encode_anchors,
    # encode_latents]] keeps decoded frames out of the object store (the group takes the
    # largest resources of its stages and is an actor pool if any stage holds a model)
    fuse: list[list[str]] = field(default_factory=list)
    lease_ttl_s: float = 120.0  # a lease whose heartbeat is older than this is stale
    take_over_lease: bool = False  # replace a stale lease (a live one is never taken)
    probe: StageResources = field(default_factory=_task)
    shots: StageResources = field(default_factory=lambda: _task(2048))
    clips: StageResources = field(default_factory=lambda: _task(3072))
    caption: StageResources = field(default_factory=StageResources)
    latents: StageResources = field(default_factory=_actor)
    anchors: StageResources = field(default_factory=_actor)
    text: StageResources = field(default_factory=lambda: _actor(16))
    judge: StageResources = field(default_factory=_actor)  # pairs: the VLM judge
    write: StageResources = field(default_factory=lambda: StageResources(num_cpus=1.0))

    def validate(self) -> None:
        check(self.num_cpus >= 0, f"engine.num_cpus={self.num_cpus} must be >= 0 (0 = all)")
        check(self.object_store_mb >= 0, "engine.object_store_mb must be >= 0 (0 = default)")
        check(self.input_retries >= 0, "engine.input_retries must be >= 0")
        check(
            0.0 <= self.max_error_rate <= 1.0,
            f"engine.max_error_rate={self.max_error_rate} must be in [0, 1] (1.0 = never fail)",
        )
        check(self.inputs_per_block >= 1, "engine.inputs_per_block must be >= 1")
        check(self.lease_ttl_s >= 5, "engine.lease_ttl_s must be >= 5 seconds")
        check(all(g for g in self.fuse), "engine.fuse groups must name at least one stage")
