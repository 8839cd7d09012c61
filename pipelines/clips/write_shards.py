"""WriteShards: the sink. Files each row in a ``clips/v1`` or ``errors/v1`` shard, marks inputs done.

IN: every non-null ``clips/v1`` column, the error fields and the row accounting. OUT: nothing
(returns the ids of inputs whose rows all arrived, for the progress bar). Resources: the driver.

It runs in the driver, not in a Ray worker, because both of its jobs need a global view: shards
are cut by bytes from rows of many batches (``pipelines/engine/writer.py``), and an input's completion
marker may only be written once all its rows, from whichever workers, are in shards
(``pipelines/engine/resume.py``). The driver only moves bytes; the heavy work stays in the workers.
"""

from __future__ import annotations

from pipelines.engine.resume import BuildState, InputTracker
from pipelines.engine.sink import ShardSink
from pipelines.engine.stage import (
    ACCOUNTING_COLUMNS,
    ERROR_COLUMNS,
    REQUIRED_CLIP_COLUMNS,
    Batch,
    is_error,
)
from pipelines.engine.writer import ShardWriter, error_record


class WriteShards(ShardSink):
    name = "write_shards"
    writer_class = ShardWriter
    counted = "clips"
    inputs = (*REQUIRED_CLIP_COLUMNS, *ERROR_COLUMNS, *ACCOUNTING_COLUMNS)

    def __init__(self, cfg, state: BuildState, provenance: dict, skip_ids: set[str]) -> None:
        super().__init__(cfg, state, provenance, skip_ids)
        self.tracker = InputTracker()

    def process(self, batch: Batch) -> Batch:
        finished = []
        for row in batch:
            arrived, durable = self._add(row)
            self._written(durable)
            if arrived:
                finished.append({"video_id": row["video_id"]})
        self._written(self.writer.tick())
        return finished

    def _add(self, row) -> tuple[bool, list[str]]:
        """Count the row, buffer it unless an earlier run wrote it; (input arrived, durable)."""
        row_id = error_record(row)["error_id"] if is_error(row) else row["clip_id"]
        new = row_id not in self.skip_ids
        arrived = self.tracker.arrive(row, buffered=new)
        if not new:
            self.counts["skipped_rows"] += 1
            return arrived, []
        self.skip_ids.add(row_id)
        kind = "errors" if is_error(row) else "clips"
        self.counts[kind] += 1
        add = self.writer.add_error if kind == "errors" else self.writer.add_clip
        return arrived, add(row)

    def _written(self, video_ids: list[str]) -> None:
        if video_ids:
            self.tracker.written(video_ids)
        self.state.mark_done(self.tracker.pop_done())

    def close(self) -> None:
        """Write everything still buffered and mark the inputs it completes."""
        self._written(self.writer.close())
