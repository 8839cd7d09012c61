"""VLM judge of edit pairs: scores 1-10, N runs averaged, paper thresholds (SAMA.md §4).

SAMA scored every pair with Qwen2.5-VL-72B, 3 runs averaged, on instruction following (IF),
visual quality (VQ), content preservation (CP) and, for videos, motion consistency (MC), and
kept images with IF, VQ, CP >= 9 and videos with IF >= 8, VQ >= 9, CP >= 8, MC >= 8.

- ``parse_scores`` (``sama.judge_parse``) reads every answer shape VLMs
  produce; a missing or out-of-range score raises ``JudgeParseError``.
- ``Judge.score`` runs each pair ``runs`` times with sampling seeded per (pair, run), so runs
  differ (greedy runs would be identical) yet a re-run gives the same answers. Unparseable runs
  are recorded and left out of the mean; a pair with no parseable run gets a result carrying
  an error message (``JudgeResult.to_error()`` -> a ``judge_unparseable`` error row).
- ``passes`` applies the thresholds; ``filter`` says whether the build drops failing pairs or
  leaves the scores for the trainer to apply.

A pair's source and target are both images or both clips (list of frames / (T, H, W, 3) uint8);
clips are shown as ``vlm.num_frames`` frames each (see ``sama.vlm``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from sama.config import check
from sama.errors import ErrorKind, SampleError
from sama.judge_parse import JudgeParseError, parse_scores
from sama.rng import derive_seed
from sama.vlm import VLMConfig, generate_parts, is_clip, load_vlm

STAGE = "judge"

_CRITERIA = (
    "- instruction_following: does the edited {m} carry out the instruction fully and exactly?\n"
    "- visual_quality: is the edited {m} sharp, natural and free of artifacts?\n"
    "- content_preservation: is everything the instruction does not ask to change kept "
    "identical to the original?\n"
)
DEFAULT_IMAGE_PROMPT = (
    "You are an expert judge of image editing. The first image is the original, the second is "
    'the result of the edit instruction: "{instruction}".\n'
    "Rate the edit on each criterion with an integer from 1 (worst) to 10 (best):\n"
    + _CRITERIA.format(m="image")
    + "Answer with only a JSON object: "
    '{"instruction_following": <1-10>, "visual_quality": <1-10>, "content_preservation": <1-10>}'
)
DEFAULT_VIDEO_PROMPT = (
    "You are an expert judge of video editing. You are shown frames of the original video, "
    'then the same frames of the result of the edit instruction: "{instruction}".\n'
    "Rate the edit on each criterion with an integer from 1 (worst) to 10 (best):\n"
    + _CRITERIA.format(m="video")
    + "- motion_consistency: does the edited video keep the original motion, smooth and "
    "without flicker?\n"
    "Answer with only a JSON object: "
    '{"instruction_following": <1-10>, "visual_quality": <1-10>, '
    '"content_preservation": <1-10>, "motion_consistency": <1-10>}'
)


@dataclass
class JudgeVLMConfig(VLMConfig):
    """The judge's VLM: sampled, so the runs differ (a class, not a factory, so that YAML or
    ``judge.vlm.model_id=...`` overrides keep these defaults)."""

    do_sample: bool = True
    temperature: float = 0.7
    max_new_tokens: int = 256


@dataclass
class ImageThresholds:
    """Minimum score per criterion (inclusive); null = not applied. Defaults: SAMA.md §4."""

    instruction_following: float | None = 9.0
    visual_quality: float | None = 9.0
    content_preservation: float | None = 9.0


@dataclass
class VideoThresholds:
    instruction_following: float | None = 8.0
    visual_quality: float | None = 9.0
    content_preservation: float | None = 8.0
    motion_consistency: float | None = 8.0


@dataclass
class JudgeThresholds:
    image: ImageThresholds = field(default_factory=ImageThresholds)
    video: VideoThresholds = field(default_factory=VideoThresholds)

    def for_media(self, media_type: str) -> dict[str, float]:
        """{score name: minimum} of the criteria applied to ``media_type``."""
        limits = self.video if media_type == "video" else self.image
        return {k: v for k, v in vars(limits).items() if v is not None}

    def validate(self) -> JudgeThresholds:
        for media in ("image", "video"):
            for k, v in self.for_media(media).items():
                check(1 <= v <= 10, f"judge.thresholds.{media}.{k}={v}: must be within 1..10")
        return self


@dataclass
class JudgeConfig:
    vlm: JudgeVLMConfig = field(default_factory=JudgeVLMConfig)
    runs: int = 3  # answers per pair, averaged (SAMA.md §4)
    image_prompt: str = DEFAULT_IMAGE_PROMPT  # "{instruction}" is replaced by the instruction
    video_prompt: str = DEFAULT_VIDEO_PROMPT
    thresholds: JudgeThresholds = field(default_factory=JudgeThresholds)
    filter: Literal["build", "trainer"] = "build"  # drop failing pairs now, or keep the scores

    def validate(self) -> JudgeConfig:
        check(
            isinstance(self.runs, int) and self.runs >= 1, f"judge.runs={self.runs}: must be >= 1"
        )
        check(
            self.runs == 1 or self.vlm.do_sample,
            f"judge.runs={self.runs} with judge.vlm.do_sample=false gives {self.runs} identical "
            "greedy answers; set judge.vlm.do_sample=true (seeded per pair and run) or "
            "judge.runs=1",
        )
        for name in ("image_prompt", "video_prompt"):
            check(
                "{instruction}" in getattr(self, name),
                f"judge.{name} must contain the placeholder {{instruction}}",
            )
        check(self.filter in ("build", "trainer"), "judge.filter must be 'build' or 'trainer'")
        self.vlm.validate()
        self.thresholds.validate()
        return self


# --- judging -------------------------------------------------------------------------------


@dataclass
class JudgePair:
    source: Any  # an image, or a clip (list of frames / (T, H, W, 3) uint8)
    target: Any
    instruction: str
    sample_id: str = ""  # seeds the sampling of each run

    @property
    def media_type(self) -> Literal["image", "video"] | None:
        """ "image" or "video"; None when one side is an image and the other a clip."""
        src, tgt = is_clip(self.source), is_clip(self.target)
        if src != tgt:
            return None
        return "video" if src else "image"


@dataclass
class JudgeResult:
    scores: dict[str, float] | None  # mean over the parseable runs; None when none parsed
    raw: list[str]  # every answer, in run order
    run_scores: list[dict[str, float] | None]  # per run; None where unparseable
    parse_errors: list[str | None]  # per run; None where parsed
    n_valid: int
    media_type: str | None
    error: str | None = None  # set when there are no scores
    error_kind: ErrorKind = ErrorKind.JUDGE_UNPARSEABLE

    def to_error(self) -> SampleError:
        """The ``errors/v1`` row of a pair without scores (call only when ``error`` is set)."""
        if self.error is None:
            raise ValueError("this JudgeResult has scores; it is not an error")
        return SampleError(self.error_kind, self.error, stage=STAGE)


def average_runs(answers: Sequence[str], video: bool) -> JudgeResult:
    """Parse each run's answer; average the scores of those that parse."""
    run_scores: list[dict[str, float] | None] = []
    errors: list[str | None] = []
    for a in answers:
        try:
            run_scores.append(parse_scores(a, video))
            errors.append(None)
        except JudgeParseError as e:
            run_scores.append(None)
            errors.append(str(e))
    valid = [s for s in run_scores if s is not None]
    mean = None
    if valid:
        mean = {k: sum(s[k] for s in valid) / len(valid) for k in valid[0]}
    media = "video" if video else "image"
    error = None
    if not valid:
        error = (
            f"all {len(answers)} judge answers unparseable; last: {errors[-1] if errors else None}"
        )
    return JudgeResult(mean, list(answers), run_scores, errors, len(valid), media, error)


def passes(
    scores: Mapping[str, float] | None, media_type: str, thresholds: JudgeThresholds
) -> bool:
    """True when every thresholded score is present and >= its threshold."""
    if scores is None:
        return False
    limits = thresholds.for_media(media_type)
    return all(k in scores and scores[k] >= v for k, v in limits.items())


class Judge:
    """A loaded VLM + judge prompts; ``score`` a batch of pairs ``runs`` times each."""

    def __init__(self, model: Any, processor: Any, cfg: JudgeConfig) -> None:
        self.model = model
        self.processor = processor
        self.cfg = cfg

    @classmethod
    def load(cls, cfg: JudgeConfig | None = None) -> Judge:
        cfg = (cfg or JudgeConfig()).validate()
        model, processor = load_vlm(cfg.vlm)
        return cls(model, processor, cfg)

    def request(self, pair: JudgePair) -> list[Any]:
        """The interleaved parts shown to the VLM for one pair."""
        if pair.media_type == "video":
            prompt = self.cfg.video_prompt.replace("{instruction}", pair.instruction)
            return [
                "Original video frames:",
                pair.source,
                "Edited video frames:",
                pair.target,
                prompt,
            ]
        prompt = self.cfg.image_prompt.replace("{instruction}", pair.instruction)
        return ["Original image:", pair.source, "Edited image:", pair.target, prompt]

    def score(self, pairs: Sequence[JudgePair]) -> list[JudgeResult]:
        """One result per pair: ``runs`` answers each, all pairs' runs batched together."""
        runs = self.cfg.runs
        ok = [p for p in pairs if p.media_type is not None]
        requests, seeds = [], []
        for pair in ok:
            sid = pair.sample_id or pair.instruction
            for r in range(runs):
                requests.append(self.request(pair))
                seeds.append(derive_seed(self.cfg.vlm.seed, "judge", sid, r))
        answers = iter(generate_parts(self.model, self.processor, requests, self.cfg.vlm, seeds))
        results = []
        for pair in pairs:
            if pair.media_type is None:
                msg = "source and target must both be images or both be clips"
                results.append(JudgeResult(None, [], [], [], 0, None, msg, ErrorKind.MISMATCH))
                continue
            mine = [next(answers) for _ in range(runs)]
            results.append(average_runs(mine, pair.media_type == "video"))
        return results
