"""LoadPairFrames: decode the same frames of source and target into the pair's bucket.

IN: the plan columns of ``ProbePairs`` and the probes. OUT: ``source_frames``,
``target_frames`` (uint8 T,H,W,3, T = ``num_frames``: 4k+1 from ``start_frame`` for videos, 1
for images) and their shared ``frames_shape``. Fan-out 1:1. Resources: 1 CPU task per pair
(``engine.clips``, the clip build's decode tasks).

The decoding is ``sama.pairs.frames.pair_frames_job`` in the decode sandbox: the frames come
back in shared memory and enter the batch without a copy; a video that ends early is a
``truncated`` error row, a stall a ``timeout`` row.
"""

from __future__ import annotations

import json

from pipelines.engine.stage import Row, Rows, Stage
from pipelines.pairs.columns import PAIR_COLUMNS, pair_columns
from pipelines.pairs.probe_pairs import PLAN_COLUMNS
from sama.sandbox import run_job


def plan_of(row: Row):
    """The ``sama.pairs.PairPlan`` a probed row describes."""
    from sama.pairs.align import PairPlan

    return PairPlan(
        media_type=row["media_type"],
        start_frame=row["start_frame"],
        num_frames=row["num_frames"],
        fps=row["fps"],
        bucket=(row["bucket_width"], row["bucket_height"]),
        source_size=(row["orig_width"], row["orig_height"]),
        target_size=(row["orig_width"], row["orig_height"]),  # not needed to decode
    )


class LoadPairFrames(Stage):
    name = "load_pair_frames"
    engine_key = "clips"
    registry = PAIR_COLUMNS
    inputs = (*pair_columns("source_uri", "target_uri"), *PLAN_COLUMNS,
              "source_probe", "target_probe")  # fmt: skip
    outputs = ("source_frames", "target_frames", "frames_shape")
    drops = ("source_probe", "target_probe")

    def process(self, rows: Rows) -> Rows:
        return self.map_rows(rows, self._load)

    def _load(self, row: Row) -> Row:
        probes = tuple(None if p is None else json.loads(p)
                       for p in (row["source_probe"], row["target_probe"]))  # fmt: skip
        kwargs = dict(source_uri=row["source_uri"], target_uri=row["target_uri"], plan=plan_of(row),
                      infos=probes, storage_options=self.cfg.input.storage_options)  # fmt: skip
        (out,) = run_job("sama.pairs.frames:pair_frames_job", kwargs,
                         self.cfg.budget.for_uri(row["source_uri"]), self.name)  # fmt: skip
        return {"source_frames": out["source"], "target_frames": out["target"],
                "frames_shape": list(out["source"].shape)}  # fmt: skip
