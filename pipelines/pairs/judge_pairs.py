"""JudgePairs (optional, ``judge.enabled``): VLM-judge scores of each pair (SAMA.md §4).

IN: ``pair_id``, ``instruction``, ``media_type``, ``source_frames``, ``target_frames``,
``frames_shape``. OUT: ``score_if``, ``score_vq``, ``score_cp``, ``score_mc`` (videos only; the
mean over ``judge.runs`` sampled runs) and ``judge_model``. Fan-out 1:1. Resources: an actor
pool (``engine.judge``) holding the VLM (``sama.judge.Judge``).

SAMA scored every pair 1-10 with Qwen2.5-VL-72B (3 runs averaged) and kept images with IF, VQ,
CP >= 9 and videos with IF >= 8, VQ >= 9, CP >= 8, MC >= 8 (``judge.thresholds``). Outcomes:

- no run of a pair gives a parseable answer: a ``judge_unparseable`` error row (the raw answer's
  parse error in the message), never a crash;
- ``judge.filter=build`` and a score under its threshold: a ``filtered`` error row naming the
  failing scores, so the pair is still accounted for (CONVENTIONS.md rule 5);
- otherwise the pair goes on with its scores (``filter=trainer``: the trainer's
  ``data.image_min_scores``/``video_min_scores`` apply them).

It runs before the encoders, so filtered pairs cost no VAE time. The pairs of a batch are scored
in one ``Judge.score`` call; each run is sampled with a seed of (pair id, run), so a pair's
scores do not depend on its batch.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from pipelines.engine.stage import PARENT, Row, Rows, Stage
from pipelines.pairs.columns import PAIR_COLUMNS, SCORE_COLUMNS, pair_columns
from sama.config import to_dict
from sama.errors import ErrorKind, SampleError

# sama.judge score names -> pairs/v1 columns
JUDGE_COLUMNS = {
    "instruction_following": SCORE_COLUMNS["if"],
    "visual_quality": SCORE_COLUMNS["vq"],
    "content_preservation": SCORE_COLUMNS["cp"],
    "motion_consistency": SCORE_COLUMNS["mc"],
}


def below_thresholds(scores: dict[str, float], limits: dict[str, float]) -> list[str]:
    """``"name score < minimum"`` for every score under its threshold (or missing)."""
    return [
        f"{k} {scores.get(k, float('nan')):g} < {v:g}"
        for k, v in limits.items()
        if not (k in scores and scores[k] >= v)
    ]


class JudgePairs(Stage):
    name = "judge_pairs"
    engine_key = "judge"
    registry = PAIR_COLUMNS
    inputs = (*pair_columns("pair_id", "instruction", "media_type"),
              "source_frames", "target_frames", "frames_shape")  # fmt: skip
    outputs = pair_columns(*SCORE_COLUMNS.values(), "judge_model")

    def __init__(self, cfg) -> None:
        super().__init__(cfg)
        self.judge: Any = None

    @classmethod
    def enabled(cls, cfg) -> bool:
        return cfg.judge.enabled

    def uses_actor(self) -> bool:
        return True

    def setup(self) -> None:
        if self.judge is None:
            from sama.judge import Judge

            self.judge = Judge.load(self.cfg.judge)

    def process(self, rows: Rows) -> Rows:
        """One batched judge call; a whole-batch failure is retried row by row by the engine."""
        from sama.judge import JudgePair

        pairs = [JudgePair(judge_visual(r, "source"), judge_visual(r, "target"), r["instruction"],
                           r["pair_id"]) for r in rows]  # fmt: skip
        results = self.judge.score(pairs) if pairs else []
        return [self._apply(r, res) for r, res in zip(rows, results, strict=True)]

    def _apply(self, row: Row, result: Any) -> Row:
        from sama.judge import passes

        if result.error is not None:
            return self.fail(row, result.to_error())
        j = self.cfg.judge
        scores = result.scores
        out = {col: scores.get(name) for name, col in JUDGE_COLUMNS.items()}
        out["judge_model"] = j.vlm.model_id
        media = row["media_type"]
        if j.filter == "build" and not passes(scores, media, j.thresholds):
            failing = below_thresholds(scores, j.thresholds.for_media(media))
            message = f"judge scores under the {media} thresholds: {', '.join(failing)}"
            return self.fail(row, SampleError(ErrorKind.FILTERED, message, stage=self.name))
        return {PARENT: row[PARENT], **out}

    def describe(self) -> dict:
        j = self.cfg.judge
        return {
            "judge": {
                "vlm": to_dict(j.vlm),
                "runs": j.runs,
                "image_prompt": j.image_prompt,
                "video_prompt": j.video_prompt,
                "thresholds": to_dict(j.thresholds),
                "filter": j.filter,
            }
        }


def judge_visual(row: Row, side: str) -> np.ndarray:
    """A side of the pair as the judge takes it: an (H, W, 3) image or a (T, H, W, 3) clip."""
    frames_THWC = np.asarray(row[f"{side}_frames"]).reshape(row["frames_shape"])
    return frames_THWC[0] if row["media_type"] == "image" else frames_THWC
