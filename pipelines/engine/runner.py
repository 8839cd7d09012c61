"""Runs the stages: the one module that imports Ray (CONVENTIONS.md layout).

The adapter (after NeMo Curator's ``backends/ray_data/adapter.py``) maps each stage onto Ray
Data's streaming ``map_batches``: stages that hold a model (``uses_actor()``) become actor pools
of ``engine.<stage>.concurrency`` actors whose constructor runs ``setup()`` once; the others
become tasks (one video per call, retried by Ray if they fail). Batches travel as Arrow tables
with the declared column types (``stages.base.schema_for``), never inferred. The driver pulls the
finished rows and hands them to the sink (``WriteShards``).

Before launch ``check_plan`` verifies every stage's inputs are produced upstream; with
``engine.strict`` (the tests) each batch is checked to carry exactly the declared columns.

``engine.executor=local`` runs the same stages in this process, in order, without Ray: for
debugging, and for inputs only this process can see (fsspec ``memory://``).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import sys
import warnings
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import pyarrow as pa

from pipelines.clips.list_inputs import ListInputs
from pipelines.clips.write_shards import WriteShards
from pipelines.config import BuildConfig
from pipelines.engine.stage import Batch, Stage, check_batch, check_plan, to_table
from sama.config import config_hash
from sama.errors import ConfigError

# passed to the workers of a cluster we join (a local Ray inherits this process's environment)
PROPAGATED_ENV = (
    "HF_HUB_OFFLINE",
    "TRANSFORMERS_OFFLINE",
    "HF_DATASETS_OFFLINE",
    "HF_HOME",
    "TOKENIZERS_PARALLELISM",
)
MAX_INPUT_BLOCKS = 10_000

Sink = Callable[[Batch], None]


def plan(
    stages: list[Stage],
    source: type[Stage] = ListInputs,
    writer: type[Stage] = WriteShards,
) -> list[tuple[str, ...]]:
    """The columns after each stage; raises if a stage reads what nothing produces.

    ``source`` makes the input rows (in the driver), ``writer`` is the sink: the clip build's
    by default; the pair build passes ``ListPairs`` and ``WritePairShards``."""
    return check_plan(stages, source.outputs, writer.inputs)


def run(
    cfg: BuildConfig,
    stages: list[Stage],
    inputs: Batch,
    sink: Sink,
    *,
    source: type[Stage] = ListInputs,
    writer: type[Stage] = WriteShards,
) -> None:
    """Push ``inputs`` (``source`` rows) through ``stages``; every output batch goes to ``sink``."""
    columns = plan(stages, source, writer)
    if not inputs:
        return
    if cfg.engine.executor == "local":
        _run_local(cfg, stages, columns, inputs, sink)
    else:
        _run_ray(cfg, stages, columns, inputs, sink, source)


def describe(cfg: BuildConfig, stages: list[Stage]) -> dict:
    """Merged ``describe()`` of the stages (provenance). Model stages are set up where they
    would run (a Ray task with the stage's resources), so the driver needs no GPU."""
    out: dict = {}
    model_stages = [s for s in stages if s.describe_loads_model]
    for st in stages:
        if not st.describe_loads_model:
            out.update(st.describe())
    if cfg.engine.executor == "local":
        for st in model_stages:
            st.setup()
            out.update(st.describe())
        return out
    import ray

    refs = []
    for st in model_stages:
        res = st.resources()
        remote = ray.remote(num_cpus=res.num_cpus, num_gpus=res.num_gpus)(_describe_remote)
        refs.append(remote.remote(type(st), cfg))
    for d in ray.get(refs):
        out.update(d)
    return out


def _describe_remote(stage_cls: type[Stage], cfg: BuildConfig) -> dict:
    st = stage_cls(cfg)
    st.setup()
    return st.describe()


# ---- Ray session ---------------------------------------------------------------------------
@contextlib.contextmanager
def ray_session(cfg: BuildConfig) -> Iterator[None]:
    """Start a local Ray (CPU count and object store capped from config) or join
    ``engine.ray_address``; a Ray already initialised in this process is reused as is."""
    if cfg.engine.executor == "local":
        yield
        return
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray

    if ray.is_initialized():
        _configure_data()
        yield
        return
    e = cfg.engine
    common: dict[str, Any] = {"logging_level": logging.WARNING, "include_dashboard": False}
    if e.ray_address:
        env = {k: os.environ[k] for k in PROPAGATED_ENV if k in os.environ}
        ray.init(
            address=e.ray_address,
            runtime_env={"env_vars": env} if env else None,
            logging_level=logging.WARNING,
        )
    else:
        ray.init(
            address="local",  # a new instance, never a cluster someone left running here
            num_cpus=e.num_cpus or None,
            num_gpus=None if e.num_gpus < 0 else e.num_gpus,
            object_store_memory=e.object_store_mb * 2**20 if e.object_store_mb else None,
            **common,
        )
    _configure_data()
    try:
        yield
    finally:
        ray.shutdown()


def _configure_data() -> None:
    import ray.data

    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False  # build.py prints its own
    ctx.print_on_execution_start = False
    ctx.enable_auto_log_stats = False
    logging.getLogger("ray.data").setLevel(logging.WARNING)


# ---- Ray Data ------------------------------------------------------------------------------
def _run_ray(
    cfg: BuildConfig,
    stages: list[Stage],
    columns: list[tuple[str, ...]],
    inputs: Batch,
    sink: Sink,
    source: type[Stage] = ListInputs,
) -> None:
    import ray.data

    n = min(len(inputs), MAX_INPUT_BLOCKS)
    step = -(-len(inputs) // n)
    blocks = [
        to_table(inputs[i : i + step], source.outputs, source.registry)
        for i in range(0, len(inputs), step)
    ]
    check_resources(cfg, stages)
    ds = ray.data.from_arrow(blocks)
    key = config_hash(cfg)
    for st, cols in zip(stages, columns, strict=True):
        ds = _map_stage(ds, cfg, st, cols, key)
    for table in ds.iter_batches(batch_size=None, batch_format="pyarrow"):
        sink(table.to_pylist())


def _map_stage(ds: Any, cfg: BuildConfig, st: Stage, cols: tuple[str, ...], key: str) -> Any:
    import ray.data

    res, strict = st.resources(), cfg.engine.strict
    kwargs: dict[str, Any] = {
        "batch_size": res.batch_size,
        "batch_format": "pyarrow",
        "num_cpus": res.num_cpus,
    }
    if res.num_gpus:
        kwargs["num_gpus"] = res.num_gpus
    if st.uses_actor():
        # Ray Data restarts actors lost to a crash; an exception in a model stage is a bug and
        # fails the build (its finished inputs are kept, and skipped by the re-run).
        return ds.map_batches(
            StageActor,
            fn_constructor_kwargs={
                "stage_cls": type(st),
                "cfg": cfg,
                "columns": cols,
                "strict": strict,
            },
            compute=ray.data.ActorPoolStrategy(size=max(1, res.concurrency)),
            **kwargs,
        )
    fn = functools.partial(_run_task, type(st), cfg, key, cols, strict)
    compute = ray.data.TaskPoolStrategy(size=res.concurrency) if res.concurrency else None
    with warnings.catch_warnings():  # retry args are "ray_remote_args", deprecated in 2.60
        warnings.simplefilter("ignore", DeprecationWarning)
        # a failed decode task (e.g. a flaky remote read) is retried a few times, then fails
        return ds.map_batches(
            fn,
            compute=compute,
            max_retries=cfg.engine.task_retries,
            retry_exceptions=True,
            **kwargs,
        )


def check_resources(cfg: BuildConfig, stages: list[Stage]) -> None:
    """The actor pools must leave room for at least one decode task, or nothing moves."""
    import ray

    total = ray.cluster_resources()
    actors = [(max(1, s.resources().concurrency), s.resources()) for s in stages if s.uses_actor()]
    need_cpu = sum(n * r.num_cpus for n, r in actors)
    need_cpu += max((s.resources().num_cpus for s in stages if not s.uses_actor()), default=0)
    need_gpu = sum(n * r.num_gpus for n, r in actors)
    have_cpu, have_gpu = total.get("CPU", 0.0), total.get("GPU", 0.0)
    problems = []
    if need_cpu > have_cpu:
        problems.append(
            f"the model actor pools plus one decode task need {need_cpu:g} CPUs, "
            f"the cluster has {have_cpu:g}: lower engine.<latents|anchors|text>."
            "num_cpus (e.g. 0.25) or concurrency, or raise engine.num_cpus"
        )
    if need_gpu > have_gpu:
        problems.append(
            f"the actor pools need {need_gpu:g} GPUs, the cluster has "
            f"{have_gpu:g}: set engine.<stage>.num_gpus=0 (and the encoders' "
            "device=cpu) or run on GPU nodes"
        )
    if problems and not cfg.engine.ray_address:
        raise ConfigError("; ".join(problems))
    for p in problems:  # a cluster may autoscale: warn only
        print(f"sama build: warning: {p}", file=sys.stderr)


def _apply(st: Stage, table: pa.Table, cols: tuple[str, ...], strict: bool) -> Iterator[pa.Table]:
    for out in _batches(st.process(table.to_pylist())):
        if strict:
            check_batch(st.name, out, cols)
        if out:
            yield to_table(out, cols, st.registry)


class StageActor:
    """A Ray Data actor holding one set-up stage (its model stays loaded between batches)."""

    def __init__(
        self, stage_cls: type[Stage], cfg: BuildConfig, columns: tuple[str, ...], strict: bool
    ) -> None:
        self.stage = stage_cls(cfg)
        self.stage.setup()
        self.columns, self.strict = columns, strict

    def __call__(self, table: pa.Table) -> Iterator[pa.Table]:
        yield from _apply(self.stage, table, self.columns, self.strict)


_TASK_STAGES: dict[tuple[str, str], Stage] = {}  # set-up stages cached per worker process


def _run_task(
    stage_cls: type[Stage],
    cfg: BuildConfig,
    key: str,
    cols: tuple[str, ...],
    strict: bool,
    table: pa.Table,
) -> Iterator[pa.Table]:
    cache_key = (stage_cls.__qualname__, key)
    st = _TASK_STAGES.get(cache_key)
    if st is None:
        st = stage_cls(cfg)
        st.setup()
        _TASK_STAGES[cache_key] = st
    yield from _apply(st, table, cols, strict)


def _batches(result: Batch | Iterable[Batch]) -> Iterator[Batch]:
    """``process`` returns a batch (a list of rows) or an iterator of batches (fan-out)."""
    if isinstance(result, list):
        yield result
    else:
        yield from result


# ---- in-process ----------------------------------------------------------------------------
def _run_local(
    cfg: BuildConfig, stages: list[Stage], columns: list[tuple[str, ...]], inputs: Batch, sink: Sink
) -> None:
    for st in stages:
        st.setup()
    stream: Iterator[Batch] = ([row] for row in inputs)
    for st, cols in zip(stages, columns, strict=True):
        stream = _local_stage(st, cols, stream, cfg.engine.strict)
    for batch in stream:
        sink(batch)


def _local_stage(
    st: Stage, cols: tuple[str, ...], batches: Iterator[Batch], strict: bool
) -> Iterator[Batch]:
    size = st.resources().batch_size
    for batch in _rebatch(batches, size):
        for out in _batches(st.process(batch)):
            if strict:
                check_batch(st.name, out, cols)
            if out:  # the same rows Ray would carry: exactly the declared columns
                yield [{c: r.get(c) for c in cols} for r in out]


def _rebatch(batches: Iterator[Batch], size: int) -> Iterator[Batch]:
    buf: Batch = []
    for b in batches:
        buf.extend(b)
        while len(buf) >= size:
            yield buf[:size]
            buf = buf[size:]
    if buf:
        yield buf
