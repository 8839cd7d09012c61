"""ShardSink: what the two build sinks (``WriteShards``, ``WritePairShards``) share.

Both run in the driver, open one shard writer sized by ``output.*`` under the build's resume
state, skip the rows an interrupted run already wrote (``skip_ids``) and count what they file.
They differ in the writer class and in when an input is done (a clip input once all its rows
are durable, a pair input once its one row is), which each subclass says.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pipelines.engine.resume import BuildState
from pipelines.engine.stage import Stage
from pipelines.engine.writer import ShardWriter


class ShardSink(Stage):
    """Base of the build sinks: ``writer_class`` files the rows, ``counted`` names the count of
    data rows (``counts`` also holds ``errors`` and ``skipped_rows``)."""

    writer_class: ClassVar[type[ShardWriter]]
    counted: ClassVar[str]

    def __init__(self, cfg, state: BuildState, provenance: dict, skip_ids: set[str]) -> None:
        super().__init__(cfg)
        o = cfg.output
        self.state = state
        self.writer = self.writer_class(
            state.fs,
            state.root,
            provenance,
            shard_bytes=int(o.shard_size_mb * 2**20),
            row_group_rows=o.row_group_rows,
            flush_interval_s=o.flush_interval_s,
            run_id=state.run_id,
        )
        self.skip_ids = skip_ids
        self.counts: dict[str, Any] = {self.counted: 0, "errors": 0, "skipped_rows": 0}
