"""WritePairShards: the pair build's sink. Files each row in ``pairs/v1`` or ``errors/v1``.

IN: every non-null ``pairs/v1`` column, ``input_uri`` and the error fields. OUT: nothing (returns
the ids of the inputs it finished, for the progress bar). Resources: the driver, as the clip
build's ``WriteShards`` (shards are cut by bytes across batches; markers need a global view).

A pair is one row, so an input is done as soon as its row is durable (in a renamed shard); its
resume marker is written then (``pipelines/engine/resume.py``, state under ``_state/pairs/``). A row an
interrupted run already wrote (``skip_ids``) is not written again, and its input is marked done.
"""

from __future__ import annotations

from pipelines.engine.sink import ShardSink
from pipelines.engine.stage import ERROR_COLUMNS, Batch, is_error
from pipelines.pairs.columns import PAIR_COLUMNS, REQUIRED_PAIR_COLUMNS
from pipelines.pairs.writer import PairShardWriter, pair_error_id


class WritePairShards(ShardSink):
    name = "write_pair_shards"
    writer_class = PairShardWriter
    counted = "pairs"
    registry = PAIR_COLUMNS
    inputs = (*REQUIRED_PAIR_COLUMNS, "input_uri", *ERROR_COLUMNS)

    def process(self, batch: Batch) -> Batch:
        done: list[str] = []
        for row in batch:
            error = is_error(row)
            row_id = pair_error_id(row) if error else row["pair_id"]
            if row_id in self.skip_ids:  # written by an interrupted run: the input is complete
                self.counts["skipped_rows"] += 1
                done.append(row["pair_id"])
                continue
            self.skip_ids.add(row_id)
            self.counts["errors" if error else "pairs"] += 1
            done += self.writer.add_error(row) if error else self.writer.add_row(row)
        done += self.writer.tick()
        self.state.mark_done(done)
        return [{"pair_id": r["pair_id"]} for r in batch]

    def close(self) -> None:
        """Write everything still buffered and mark the inputs it completes."""
        self.state.mark_done(self.writer.close())
