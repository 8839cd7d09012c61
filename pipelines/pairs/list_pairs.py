"""ListPairs: the pair build's inputs, one row per manifest row (``sama.pairs.read_pairs``).

IN: nothing (runs once, in the driver, before launch: resume filters the list before anything
is probed, and ``summary.json`` needs every input). OUT: the ``pairs/v1`` columns the manifest
gives (``pair_id``, ``corpus``, ``source_uri``, ``target_uri``, ``instruction``, and judge
scores when the manifest carries them, ``judge_model="manifest"``), ``input_uri``
(``manifest#row``), ``media_hint``, ``drop_first_frames`` (OpenVE-3M: 4, SAMA.md §4) and the
error fields. Fan-out: 1 row per manifest row. Resources: the driver.

A row that cannot be a pair (``BadRow``: no source/target, empty instruction, broken JSON line,
duplicate id) becomes a ``bad_manifest_row`` error row under its own id, so it is accounted for.
"""

from __future__ import annotations

from pipelines.engine.stage import ERROR_COLUMNS, Batch, Row, Stage
from pipelines.pairs.columns import PAIR_COLUMNS, SCORE_COLUMNS, pair_columns
from sama.pairs.manifest import BadRow, PairItem, read_pairs

MANIFEST_JUDGE = "manifest"  # judge_model of scores that came with the manifest


class ListPairs(Stage):
    name = "list_pairs"
    registry = PAIR_COLUMNS
    inputs = ()
    outputs = (
        *pair_columns("pair_id", "corpus", "source_uri", "target_uri", "instruction"),
        *pair_columns(*SCORE_COLUMNS.values(), "judge_model"),
        "input_uri",
        "media_hint",
        "drop_first_frames",
        *ERROR_COLUMNS,
    )

    def process(self, batch: Batch = ()) -> Batch:
        """The listing (``batch`` is ignored: this is the source of the pipeline)."""
        return [
            self._row(item) if isinstance(item, PairItem) else self._bad(item)
            for item in read_pairs(self.cfg.pair_manifest())
        ]

    def _row(self, item: PairItem) -> Row:
        scores = item.scores or {}
        return {
            **item.to_row(),
            **{col: scores.get(key) for key, col in SCORE_COLUMNS.items()},
            "judge_model": MANIFEST_JUDGE if scores else None,
            "input_uri": item.input_uri,
            "media_hint": item.media_type,
            "drop_first_frames": item.drop_first_frames,
            **dict.fromkeys(ERROR_COLUMNS),
        }

    def _bad(self, bad: BadRow) -> Row:
        row = dict.fromkeys(self.outputs)
        row.update(pair_id=bad.item_id, input_uri=bad.input_uri)
        return self.fail(row, bad.error())
