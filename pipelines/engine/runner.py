"""Runs the stages: the one module that imports Ray (CONVENTIONS.md layout).

The adapter (after NeMo Curator's ``backends/ray_data/adapter.py``) maps the build onto Ray
Data, streaming:

    read_datasource(inputs table, small blocks)       engine/listing.py, in the workers
      -> map_batches(stage) for each stage             tasks, or actor pools for model stages
      -> map_batches(write, batch_size=rows_per_shard) the workers write shards + sidecars
      -> the driver iterates the sidecars              a few KB per shard: progress, completion

Batches are Arrow tables typed from the recipe's registry (``engine/apply.py``: a stage sees
only its declared columns; the rest passes through untouched). Model stages
(``uses_actor()``) become pools of ``engine.<stage>.concurrency`` actors; the others tasks,
retried by Ray if a worker dies. ``engine.fuse`` runs consecutive stages in one process.

Placement (``plan_placement``): Ray sees a cluster as one pool of resources, but a task runs
on one node. Actor pools that take fractions of every node's CPUs can leave no node with a whole
CPU for a decode task, and the build then waits forever. So before launch the actors are
packed, per node, onto as few nodes as fit (best fit), the plan is checked to leave some node
room for each kind of task, and each pool that fits on one node is pinned there (soft node
affinity: if that node dies, Ray may restart the pool elsewhere).

``engine.executor=local`` runs the same stages and the same writer in this process, without Ray:
for debugging, and for inputs only this process can see (fsspec ``memory://``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from pipelines.engine.apply import apply_stage
from pipelines.engine.listing import ListedInputs, read_part
from pipelines.engine.stage import Registry, Stage, check_plan, schema_for
from pipelines.engine.writer import RecordKind, WriteSettings, write_bundle
from sama.errors import ConfigError

# passed to the workers of a cluster we join (a local Ray inherits this process's environment)
PROPAGATED_ENV = (
    "HF_HUB_OFFLINE",
    "TRANSFORMERS_OFFLINE",
    "HF_DATASETS_OFFLINE",
    "HF_HOME",
    "TOKENIZERS_PARALLELISM",
)
LISTING_CPUS = 0.25  # a read task of the inputs table (a slice of a small table) before an actor


@dataclass
class Job:
    """Everything one run of the stages needs (built by ``engine/driver.py``)."""

    cfg: Any
    stages: list[Stage]
    registry: Registry
    source_columns: tuple[str, ...]
    sink_columns: tuple[str, ...]
    record: RecordKind
    write: WriteSettings
    listed: ListedInputs
    open_fs: Callable[[], Any]  # the output filesystem (for the inputs table)
    done: pa.Array  # inputs finished by earlier runs
    skip: pa.Array  # row ids earlier runs wrote of unfinished inputs
    rows_per_shard: int
    on_sidecar: Callable[[dict], None]


def plan(stages: list[Stage], source_columns, sink_columns) -> list[tuple[str, ...]]:
    """The columns after each stage; raises if a stage reads what nothing produces."""
    return check_plan(stages, source_columns, sink_columns)


def describe(cfg: Any, stages: list[Stage]) -> dict:
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


def _describe_remote(stage_cls: type[Stage], cfg: Any) -> dict:
    st = stage_cls(cfg)
    st.setup()
    return st.describe()


# ---- Ray session ---------------------------------------------------------------------------
@contextlib.contextmanager
def ray_session(cfg: Any) -> Iterator[None]:
    """Start a local Ray (CPU count and object store capped from config; token authentication
    on, as Ray sets it up) or join ``engine.ray_address``; a Ray already initialised in this
    process is reused as is."""
    if cfg.engine.executor == "local":
        yield
        return
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray

    if ray.is_initialized():
        _configure_data()
        yield
        return
    e = cfg.engine
    if e.ray_address:
        _send_token_when_joining()
        env = {k: os.environ[k] for k in PROPAGATED_ENV if k in os.environ}
        ray.init(address=e.ray_address, runtime_env={"env_vars": env} if env else None,
                 logging_level=logging.WARNING)  # fmt: skip
    else:
        # token authentication stays on (Ray's default for a new local cluster since 2.5x)
        ray.init(
            address="local",  # a new instance, never a cluster someone left running here
            num_cpus=e.num_cpus or None,
            num_gpus=None if e.num_gpus < 0 else e.num_gpus,
            object_store_memory=e.object_store_mb * 2**20 if e.object_store_mb else None,
            logging_level=logging.WARNING,
            include_dashboard=e.dashboard,
        )
    _configure_data()
    try:
        yield
    finally:
        ray.shutdown()


def _send_token_when_joining() -> None:
    """A cluster started by ``ray start`` has token authentication on, but a client whose
    ``RAY_AUTH_MODE`` is unset connects without its token and is refused: send the token when
    there is one (``~/.ray/auth_token``, ``RAY_AUTH_TOKEN``). An explicit mode is respected."""
    if "RAY_AUTH_MODE" in os.environ:
        return
    try:
        from ray._private.authentication.authentication_token_setup import (
            maybe_enable_token_auth_if_token_available,
        )
    except ImportError:  # another Ray version: its own default applies
        return
    maybe_enable_token_auth_if_token_available(warn_if_disabled=False)


def _configure_data() -> None:
    import ray.data

    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False  # the driver prints its own
    ctx.print_on_execution_start = False
    ctx.enable_auto_log_stats = False
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    # it says "progress bars disabled" once per process: ours is the driver's
    logging.getLogger("ray.data._internal.progress").setLevel(logging.ERROR)


# ---- placement -----------------------------------------------------------------------------
@dataclass
class Node:
    node_id: str
    cpu: float
    gpu: float


def cluster_nodes() -> list[Node]:
    import ray

    return [
        Node(n["NodeID"], float(n["Resources"].get("CPU", 0)), float(n["Resources"].get("GPU", 0)))
        for n in ray.nodes()
        if n.get("Alive")
    ]


def plan_placement(groups: list[list[Stage]], nodes: list[Node],
                   tasks: tuple[tuple[str, float, float], ...] = ()) -> tuple[dict[int, str], list[str]]:  # fmt: skip
    """Which node each actor pool is pinned to (group index -> node id), and the problems:
    a pool that fits nowhere, or no node left with room for a task (module docstring).
    ``tasks``: more task kinds that must find room, as (name, CPUs, GPUs): the writer."""
    free = {n.node_id: [n.cpu, n.gpu] for n in nodes}
    pins: dict[int, str] = {}
    problems: list[str] = []
    pools = [(i, g) for i, g in enumerate(groups) if any(s.uses_actor() for s in g)]
    pools.sort(key=lambda ig: (-_need(ig[1])[1], -_need(ig[1])[0] * _count(ig[1])))
    for i, g in pools:
        cpu, gpu = _need(g)
        n = _count(g)
        fits = [nid for nid, (c, gp) in free.items() if c >= cpu * n - 1e-9 and gp >= gpu * n - 1e-9]
        if fits:  # best fit: the node with the least room left that holds the whole pool
            nid = min(fits, key=lambda x: (free[x][0] - cpu * n, free[x][1] - gpu * n))
            free[nid][0] -= cpu * n
            free[nid][1] -= gpu * n
            pins[i] = nid
            continue
        for _ in range(n):  # spread: Ray places them; simulate one at a time
            ok = [nid for nid, (c, gp) in free.items() if c >= cpu - 1e-9 and gp >= gpu - 1e-9]
            if not ok:
                problems.append(f"the {_label(g)} pool needs {n} x ({cpu:g} CPU, {gpu:g} GPU) and "
                                "the cluster's nodes cannot hold it")  # fmt: skip
                break
            nid = min(ok, key=lambda x: free[x][0] - cpu)
            free[nid][0] -= cpu
            free[nid][1] -= gpu
    demands = [(_label(g), *_need(g)) for g in groups if not any(s.uses_actor() for s in g)]
    for label, cpu, gpu in [*demands, *tasks]:
        if not any(c >= cpu - 1e-9 and gp >= gpu - 1e-9 for c, gp in free.values()):
            left = ", ".join(f"{c:g} CPU" for c, _ in free.values())
            problems.append(
                f"after placing the model actors no node has {cpu:g} CPU for a {label} task "
                f"(free per node: {left}): lower the actors' engine.<stage>.num_cpus (e.g. "
                "0.25) or concurrency, that task's engine.<stage>.num_cpus, or add CPUs"
            )
    return pins, problems


def _need(group: list[Stage]) -> tuple[float, float]:
    res = [s.resources() for s in group]
    return max(r.num_cpus for r in res), max(r.num_gpus for r in res)


def _count(group: list[Stage]) -> int:
    return max(1, max(s.resources().concurrency for s in group))


def _label(group: list[Stage]) -> str:
    return "+".join(s.name for s in group)


def _stage_names(cls: type[Stage]) -> set[str]:
    """Names of every stage class defined (both recipes, either decode path, enabled or not)."""
    out = set()
    for sub in cls.__subclasses__():
        if getattr(sub, "name", None):
            out.add(sub.name)
        out |= _stage_names(sub)
    return out


def fuse_groups(stages: list[Stage], fuse: list[list[str]]) -> list[list[Stage]]:
    """Stages grouped as ``engine.fuse`` says (each group consecutive), the rest alone."""
    names = [s.name for s in stages]
    known = _stage_names(Stage)
    unknown = sorted({n for g in fuse for n in g} - known)
    if unknown:
        raise ConfigError(f"engine.fuse names unknown stage(s) {unknown}; the stages of this "
                          f"build, in order: {names}")  # fmt: skip
    groups: list[list[Stage]] = []
    i = 0
    # keyed by the group's first *enabled* stage (a group may name stages of the other decode path)
    wanted = {p[0]: p for p in ([n for n in g if n in names] for g in fuse) if p}
    for g in fuse:
        present = [n for n in g if n in names]
        if present and present != names[names.index(present[0]) : names.index(present[0]) + len(present)]:
            raise ConfigError(f"engine.fuse group {g} is not a run of consecutive enabled stages "
                              f"(the stages, in order: {names})")  # fmt: skip
    while i < len(stages):
        group = wanted.get(stages[i].name)
        size = len([n for n in group if n in names]) if group else 1
        groups.append(stages[i : i + size])
        i += size
    return groups


# ---- the stages as callables ----------------------------------------------------------------
class GroupRunner:
    """Set-up stages of one group applied in order to Arrow batches (tasks cache one per
    worker process; actors hold one for their life)."""

    def __init__(self, stage_classes: list[type[Stage]], cfg: Any, columns: list[tuple[str, ...]],
                 split_rows: bool) -> None:  # fmt: skip
        self.stages = [cls(cfg) for cls in stage_classes]
        for st in self.stages:
            st.setup()
        self.columns, self.split_rows = columns, split_rows
        self.strict, self.retries = cfg.engine.strict, cfg.engine.input_retries

    def __call__(self, table: pa.Table) -> Iterator[pa.Table]:
        tables: Iterator[pa.Table] = iter([table])
        for st, cols in zip(self.stages, self.columns, strict=True):
            tables = self._apply(st, cols, tables)
        for t in tables:
            if self.split_rows:  # one row per block: the writer's bundles are exact
                for i in range(t.num_rows):
                    yield t.slice(i, 1)
            elif t.num_rows:
                yield t

    def _apply(self, st: Stage, cols: tuple[str, ...], tables: Iterator[pa.Table]) -> Iterator[pa.Table]:
        for t in tables:
            yield from apply_stage(st, t, cols, st.registry, strict=self.strict, retries=self.retries)


_TASK_RUNNERS: dict[tuple, GroupRunner] = {}


def _task_fn(key: tuple, args: tuple) -> Callable[[pa.Table], Iterator[pa.Table]]:
    def run(table: pa.Table) -> Iterator[pa.Table]:
        runner = _TASK_RUNNERS.get(key)
        if runner is None:
            runner = _TASK_RUNNERS[key] = GroupRunner(*args)
        yield from runner(table)

    run.__name__ = key[0]
    return run


def _write_fn(record: RecordKind, ws: WriteSettings, skip_ref: Any) -> Callable:
    def write_shards(table: pa.Table) -> pa.Table:
        import json

        import ray

        skip = ray.get(skip_ref) if skip_ref is not None else None
        sidecar = write_bundle(table, record, ws, skip)
        return pa.table({"sidecar": [json.dumps(sidecar)]})

    return write_shards


def _resource_args(group: list[Stage]) -> dict[str, Any]:
    res = [s.resources() for s in group]
    out: dict[str, Any] = {"num_cpus": max(r.num_cpus for r in res)}
    gpus = max(r.num_gpus for r in res)
    if gpus:
        out["num_gpus"] = gpus
    memory = max(r.memory_mb for r in res)
    if memory:
        out["memory"] = memory * 2**20
    return out


# ---- Ray Data ------------------------------------------------------------------------------
def run(job: Job) -> dict:
    """Run ``job``; returns the per-operator statistics (Ray Data's own, when on Ray)."""
    columns = plan(job.stages, job.source_columns, job.sink_columns)
    if job.cfg.engine.executor == "local":
        return _run_local(job, columns)
    return _run_ray(job, columns)


def _run_ray(job: Job, columns: list[tuple[str, ...]]) -> dict:
    import json

    import ray
    import ray.data

    cfg = job.cfg
    groups = fuse_groups(job.stages, cfg.engine.fuse)
    w = cfg.engine.write
    read_args = _read_args(groups)
    pins, problems = plan_placement(groups, cluster_nodes(), (("listing", read_args["num_cpus"], 0.0),
                                                              ("write", w.num_cpus, 0.0)))  # fmt: skip
    if problems and not cfg.engine.ray_address:
        raise ConfigError("; ".join(problems))
    for p in problems:  # a cluster may autoscale: warn only
        print(f"sama build: warning: {p}", file=sys.stderr)
    done_ref = ray.put(job.done) if len(job.done) else None
    skip_ref = ray.put(job.skip) if len(job.skip) else None
    source = make_datasource(job, done_ref)
    ds = ray.data.read_datasource(source, override_num_blocks=max(1, len(job.listed.parts)),
                                  ray_remote_args=read_args)  # fmt: skip
    at = 0
    for gi, group in enumerate(groups):
        cols = columns[at : at + len(group)]
        at += len(group)
        ds = _map_group(ds, cfg, gi, group, cols, pins.get(gi), last=gi == len(groups) - 1)
    ds = ds.map_batches(
        _write_fn(job.record, job.write, skip_ref),
        batch_size=job.rows_per_shard,
        batch_format="pyarrow",
        **_resource_args_of(w),
    )
    for table in ds.iter_batches(batch_size=None, batch_format="pyarrow"):
        for text in table.column("sidecar").to_pylist():
            job.on_sidecar(json.loads(text))
    return operator_stats(ds)


def _read_args(groups: list[list[Stage]]) -> dict[str, Any]:
    """What a read task of the inputs table declares: the first stage's task resources when it
    is a task (Ray Data can then fuse the read into it), else ``LISTING_CPUS``. Never Ray's
    default of a whole CPU: on a node whose CPUs the actors share, that read never starts."""
    if groups and not any(s.uses_actor() for s in groups[0]):
        return _resource_args(groups[0])
    return {"num_cpus": LISTING_CPUS}


def _resource_args_of(res: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"num_cpus": res.num_cpus}
    if res.memory_mb:
        out["memory"] = res.memory_mb * 2**20
    return out


def _map_group(ds: Any, cfg: Any, gi: int, group: list[Stage], cols: list[tuple[str, ...]],
               pin: str | None, last: bool) -> Any:  # fmt: skip
    import ray.data

    name = "+".join(s.name for s in group)
    args = ([type(s) for s in group], cfg, cols, last)
    kwargs: dict[str, Any] = {"batch_size": max(s.resources().batch_size for s in group),
                              "batch_format": "pyarrow", **_resource_args(group)}  # fmt: skip
    if any(s.uses_actor() for s in group):
        if pin:  # on that node if it can; anywhere if it cannot (it died): a soft affinity
            kwargs["label_selector"] = {"ray.io/node-id": pin}
            kwargs["fallback_strategy"] = [{"label_selector": {}}]
        actor_cls = type(f"Stage_{name.replace('+', '_')}", (GroupRunner,), {})
        # Ray Data restarts actors lost to a crash and retries their batches
        return ds.map_batches(actor_cls, fn_constructor_args=args,
                              compute=ray.data.ActorPoolStrategy(size=_count(group)), **kwargs)  # fmt: skip
    conc = max(s.resources().concurrency for s in group)
    compute = ray.data.TaskPoolStrategy(size=conc) if conc else None
    # a worker that dies (node lost, OOM kill) is retried by Ray Data; Python errors are rows
    return ds.map_batches(_task_fn((name, gi, id(cfg)), args), compute=compute, **kwargs)


def make_datasource(job: Job, done_ref: Any) -> Any:
    """The Ray datasource over the inputs table (``engine/listing.py``)."""
    from ray.data.block import BlockMetadata
    from ray.data.datasource import Datasource, ReadTask

    listed, open_fs, id_col = job.listed, job.open_fs, job.record.input_column
    block_rows = job.cfg.engine.inputs_per_block
    schema = schema_for(job.source_columns, job.registry)

    class InputsDatasource(Datasource):
        def estimate_inmemory_data_size(self) -> int:
            return listed.total * 512

        def get_read_tasks(self, parallelism, per_task_row_limit=None, data_context=None):
            tasks = []
            for path, group, rows in listed.parts:
                def read(path=path, group=group):
                    import ray

                    done = ray.get(done_ref) if done_ref is not None else pa.array([], pa.string())
                    for t in read_part(open_fs(), path, group, id_col, done, block_rows):
                        yield t.select(list(schema.names)).cast(schema)

                meta = BlockMetadata(num_rows=rows, size_bytes=rows * 512, input_files=[path],
                                     exec_stats=None)  # fmt: skip
                tasks.append(ReadTask(read, meta, schema=schema))
            return tasks

    return InputsDatasource()


def operator_stats(ds: Any) -> dict:
    """Per Ray Data operator: wall time, when it started and ended (seconds after the first
    operator started: the last ``end_s`` is the pipeline's execution time), rows and bytes out
    (Ray's own statistics)."""
    out: dict = {}
    try:
        summary = ds._get_stats_summary()
    except Exception:  # noqa: BLE001 - stats are a report, never a reason to fail a build
        return out
    chain, todo = [], [summary]
    while todo:  # the dataset's own operators, then its parents' (upstream)
        s = todo.pop()
        chain = list(s.operators_stats) + chain
        todo.extend(s.parents)
    starts = [op.earliest_start_time for op in chain if op.earliest_start_time]
    t0 = min(starts) if starts else None
    for op in chain:
        rows = getattr(op.output_num_rows, "sum", None)
        nbytes = getattr(op.output_size_bytes, "sum", None)
        wall = None
        if op.earliest_start_time and op.latest_end_time:
            wall = op.latest_end_time - op.earliest_start_time
        out[op.operator_name] = {
            "wall_s": round(wall, 3) if wall is not None else None,
            "start_s": round(op.earliest_start_time - t0, 3) if wall is not None else None,
            "end_s": round(op.latest_end_time - t0, 3) if wall is not None else None,
            "task_time_s": round(op.time_total_s, 3),
            "rows_in": op.total_input_num_rows,
            "rows_out": rows,
            "bytes_out": nbytes,
            "rows_per_s": round(rows / wall, 3) if rows and wall else None,
        }
    return out


# ---- in-process ----------------------------------------------------------------------------
def _run_local(job: Job, columns: list[tuple[str, ...]]) -> dict:
    import time

    cfg, t0 = job.cfg, time.monotonic()
    groups = fuse_groups(job.stages, cfg.engine.fuse)
    runners, at = [], 0
    for group in groups:
        cols = columns[at : at + len(group)]
        at += len(group)
        runners.append(GroupRunner([type(s) for s in group], cfg, cols, False))
    schema = schema_for(job.source_columns, job.registry)
    fs = job.open_fs()

    def source() -> Iterator[pa.Table]:
        for path, group, _ in job.listed.parts:
            for t in read_part(fs, path, group, job.record.input_column, job.done,
                               cfg.engine.inputs_per_block):  # fmt: skip
                yield t.select(list(schema.names)).cast(schema)

    stream: Iterator[pa.Table] = source()
    for r in runners:
        stream = _through(r, stream)
    pending: list[pa.Table] = []
    n = 0
    for t in stream:
        pending.append(t)
        n += t.num_rows
        while n >= job.rows_per_shard:
            bundle = pa.concat_tables(pending).combine_chunks()
            job.on_sidecar(write_bundle(bundle.slice(0, job.rows_per_shard), job.record, job.write,
                                        job.skip))  # fmt: skip
            rest = bundle.slice(job.rows_per_shard)
            pending, n = ([rest] if rest.num_rows else []), rest.num_rows
    if n:
        job.on_sidecar(write_bundle(pa.concat_tables(pending), job.record, job.write, job.skip))
    return {"local": {"wall_s": round(time.monotonic() - t0, 3)}}


def _through(runner: GroupRunner, tables: Iterator[pa.Table]) -> Iterator[pa.Table]:
    for t in tables:
        yield from runner(t)


# ---- one function per item (tools over a built root, e.g. `sama dedup`) ----------------------
def map_files(fn: Callable[[Any], Any], items: Sequence[Any], *, num_cpus: float = 1.0,
              executor: str = "ray", max_in_flight: int = 0,
              on_result: Callable[[int, Any], None] | None = None) -> list:  # fmt: skip
    """``[fn(item) for item in items]``: one Ray task of ``num_cpus`` per item (``executor="ray"``,
    inside a ``ray_session``), or in this process (``"local"``); results in item order.

    ``fn`` must pickle by reference (a module-level function). ``on_result(i, result)`` runs here
    as each item finishes (progress). At most ``max_in_flight`` tasks are pending (0: 4 per CPU
    of the cluster), so results are fetched, and leave the object store, while the rest run. A
    task whose worker dies is retried by Ray; an exception raised by ``fn`` is raised here."""
    if executor == "local":
        out = []
        for i, item in enumerate(items):
            out.append(fn(item))
            if on_result is not None:
                on_result(i, out[-1])
        return out
    import ray

    remote = ray.remote(num_cpus=num_cpus)(fn)
    limit = max_in_flight or max(1, int(4 * ray.cluster_resources().get("CPU", 1)))
    results: list = [None] * len(items)
    pending: dict = {}
    todo = iter(enumerate(items))
    while True:
        for i, item in todo:
            pending[remote.remote(item)] = i
            if len(pending) >= limit:
                break
        if not pending:
            return results
        done, _ = ray.wait(list(pending), num_returns=1)
        for ref in done:
            i = pending.pop(ref)
            results[i] = ray.get(ref)
            if on_result is not None:
                on_result(i, results[i])
