"""VLM-judge answer parsing, thresholds, run averaging and config (no model needed here).

The answers below are the shapes VLMs really produce for a "reply with JSON" prompt; the model
path (tiny random and taught Qwen2.5-VL) is tested in test_vlm.py.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest

from sama.config import load_config
from sama.errors import ConfigError, ErrorKind
from sama.judge import (
    ImageThresholds,
    JudgeConfig,
    JudgeThresholds,
    JudgeVLMConfig,
    VideoThresholds,
    average_runs,
    passes,
)
from sama.judge_parse import (
    IMAGE_KEYS,
    VIDEO_KEYS,
    JudgeParseError,
    canonical_key,
    parse_scores,
    score_value,
)

IF, VQ, CP, MC = VIDEO_KEYS

# (answer, video, expected (IF, VQ, CP[, MC]))
GOOD = [
    (
        '{"instruction_following": 9, "visual_quality": 8, "content_preservation": 10}',
        False,
        (9, 8, 10),
    ),
    (
        'Sure! Here is my evaluation:\n```json\n{\n  "instruction_following": 8,\n'
        '  "visual_quality": 9,\n  "content_preservation": 7,\n  "motion_consistency": 8,\n}\n'
        "```\nThe edit is convincing overall.",
        True,
        (8, 9, 7, 8),
    ),
    (
        "{'Instruction Following': '8/10', 'Visual Quality': '9/10', 'Content Preservation': '7.5'}",
        False,
        (8, 9, 7.5),
    ),
    ('{"scores": {"IF": 8, "VQ": 9, "CP": 9, "MC": 7}, "reason": "ok"}', True, (8, 9, 9, 7)),
    ("IF: 8, VQ: 9, CP: 7, MC: 8", True, (8, 9, 7, 8)),
    (
        "**Instruction Following**: 8/10\n**Visual Quality**: 9/10\n**Content Preservation**: 6/10",
        False,
        (8, 9, 6),
    ),
    (
        '{"instruction_following_score": 9, "visual_quality_score": 9, '
        '"content_preservation_score": 9}',
        False,
        (9, 9, 9),
    ),
    (
        '{"instruction_following": {"score": 8, "reason": "hat added"}, '
        '"visual_quality": {"score": 9}, "content_preservation": {"score": 8}}',
        False,
        (8, 9, 8),
    ),
    (
        '[{"criterion": "Instruction following", "score": 8}, '
        '{"criterion": "Visual quality", "score": 7}, '
        '{"criterion": "Content preservation", "score": 9}]',
        False,
        (8, 7, 9),
    ),
    ("{instruction_following: 8, visual_quality: 9, content_preservation: 9}", False, (8, 9, 9)),
    (
        "1. Instruction following - 7\n2. Visual quality - 8\n3. Content preservation - 9",
        False,
        (7, 8, 9),
    ),
    (
        "The instruction following score is 8. Visual quality is 9 out of 10. "
        "Content preservation: 7.",
        False,
        (8, 9, 7),
    ),
    (
        '{"Instruction Following (IF)": 9, "Visual Quality (VQ)": 8, '
        '"Content Preservation (CP)": 9}',
        False,
        (9, 8, 9),
    ),
    (  # an echoed template first, the real answer last
        'Format: {"instruction_following": <1-10>, ...}\nAnswer: {"instruction_following": 6, '
        '"visual_quality": 7, "content_preservation": 8, "motion_consistency": 9}',
        True,
        (6, 7, 8, 9),
    ),
    (  # a draft and a final object: the last complete one wins
        '{"IF": 5, "VQ": 5, "CP": 5} Wait, I reconsider: {"IF": 7, "VQ": 8, "CP": 9}',
        False,
        (7, 8, 9),
    ),
    (  # an image answer may carry a motion score; it is ignored
        '{"IF": 9, "VQ": 9, "CP": 9, "MC": 3}',
        False,
        (9, 9, 9),
    ),
]

BAD = [
    (
        '{"instruction_following": 11, "visual_quality": 8, "content_preservation": 9}',
        False,
        "1..10",
    ),
    (
        '{"instruction_following": 0, "visual_quality": 9, "content_preservation": 9}',
        False,
        "1..10",
    ),
    ('{"instruction_following": 8, "visual_quality": 9}', False, "content_preservation"),
    (  # an image-shaped answer to a video question
        '{"instruction_following": 8, "visual_quality": 9, "content_preservation": 9}',
        True,
        "motion_consistency",
    ),
    ('{"instruction_following": 8, "visual_q', False, "visual_quality"),  # truncated
    ("wer\u02f2\ufffdtanvation\x1d}he\ufffdV\ufffdM\ufffduns", True, "missing"),  # garbage
    ("", False, "empty"),
    (
        '{"instruction_following": <1-10>, "visual_quality": <1-10>, '
        '"content_preservation": <1-10>}',
        False,
        "missing",
    ),
    (
        '{"instruction_following": "4/5", "visual_quality": 9, "content_preservation": 9}',
        False,
        "scale",
    ),
    (
        '{"instruction_following": true, "visual_quality": 9, "content_preservation": 9}',
        False,
        "missing",
    ),
    (
        '{"instruction_following": "N/A", "visual_quality": 9, "content_preservation": 9}',
        False,
        "missing",
    ),
]


@pytest.mark.parametrize(("answer", "video", "expected"), GOOD)
def test_parse_scores_reads_every_answer_shape(answer, video, expected):
    keys = VIDEO_KEYS if video else IMAGE_KEYS
    assert parse_scores(answer, video) == dict(zip(keys, map(float, expected), strict=True))


@pytest.mark.parametrize(("answer", "video", "fragment"), BAD)
def test_parse_scores_refuses_missing_out_of_range_and_garbage(answer, video, fragment):
    with pytest.raises(JudgeParseError, match=fragment.replace(".", r"\.")):
        parse_scores(answer, video)


def test_key_spellings_and_score_values():
    for k in (
        "IF",
        "Instruction Following",
        "instruction_following_score",
        "Instruction-following",
    ):
        assert canonical_key(k) == IF
    assert canonical_key("Motion Consistency (MC)") == MC
    assert canonical_key("Temporal consistency") == MC
    assert canonical_key("reasoning") is None and canonical_key("scores") is None
    assert score_value("8/10") == 8.0 and score_value("8.5") == 8.5 and score_value(7) == 7.0
    assert score_value("9 out of 10") == 9.0 and score_value({"score": "6"}) == 6.0
    assert score_value(True) is None and score_value("great") is None


def test_passes_uses_paper_thresholds_inclusively():
    assert tuple(f.name for f in dataclasses.fields(ImageThresholds)) == IMAGE_KEYS
    assert tuple(f.name for f in dataclasses.fields(VideoThresholds)) == VIDEO_KEYS
    t = JudgeThresholds()
    assert t.for_media("image") == {IF: 9, VQ: 9, CP: 9}
    assert t.for_media("video") == {IF: 8, VQ: 9, CP: 8, MC: 8}
    assert passes({IF: 9, VQ: 9, CP: 9}, "image", t)
    assert not passes({IF: 9, VQ: 8.9, CP: 10}, "image", t)
    # a video clears 8/9/8/8, which would fail the image thresholds
    video = {IF: 8, VQ: 9, CP: 8, MC: 8}
    assert passes(video, "video", t) and not passes(video, "image", t)
    assert not passes({IF: 8, VQ: 9, CP: 8}, "video", t)  # motion score missing
    assert not passes(None, "image", t)
    loose = ImageThresholds(instruction_following=None, visual_quality=None, content_preservation=1)
    assert passes({IF: 1, VQ: 1, CP: 1}, "image", JudgeThresholds(image=loose))


def test_average_over_runs_excludes_unparseable_ones():
    answers = [
        '{"IF": 8, "VQ": 9, "CP": 10}',
        "I cannot judge this edit.",
        "```json\n{'IF': 9, 'VQ': 8, 'CP': 9,}\n```",
    ]
    r = average_runs(answers, video=False)
    assert r.n_valid == 2 and r.error is None and r.media_type == "image"
    assert r.scores == {IF: 8.5, VQ: 8.5, CP: 9.5}
    assert r.raw == answers
    assert r.run_scores[1] is None and r.parse_errors[1] and r.parse_errors[0] is None
    assert not passes(r.scores, "image", JudgeThresholds())

    none = average_runs(["garbage", "", '{"IF": 12}'], video=True)
    assert none.scores is None and none.n_valid == 0
    assert "all 3 judge answers unparseable" in none.error
    err = none.to_error()
    assert err.kind is ErrorKind.JUDGE_UNPARSEABLE and err.stage == "judge"
    with pytest.raises(ValueError):
        r.to_error()


def test_judge_config_validation_and_overrides(tmp_path):
    cfg = load_config(
        JudgeConfig,
        overrides=["thresholds.image.visual_quality=8", "runs=5", "filter=trainer"],
    )
    assert cfg.thresholds.for_media("image") == {IF: 9, VQ: 8, CP: 9} and cfg.runs == 5
    assert cfg.thresholds.for_media("video") == {IF: 8, VQ: 9, CP: 8, MC: 8}
    off = load_config(JudgeConfig, overrides=["thresholds.video.motion_consistency=null"])
    assert off.thresholds.for_media("video") == {IF: 8, VQ: 9, CP: 8}
    assert cfg.vlm.do_sample and cfg.filter == "trainer"
    # overriding one VLM field keeps the judge's sampling defaults
    moved = load_config(JudgeConfig, overrides=["vlm.model_id=/models/qwen72b", "vlm.batch_size=2"])
    assert moved.vlm.do_sample and moved.vlm.max_new_tokens == 256
    with pytest.raises(ConfigError, match="do_sample"):
        JudgeConfig(vlm=JudgeVLMConfig(do_sample=False), runs=3).validate()
    JudgeConfig(vlm=JudgeVLMConfig(do_sample=False), runs=1).validate()  # one greedy run is fine
    with pytest.raises(ConfigError, match="unknown config key"):
        load_config(JudgeConfig, overrides=["thresholds.image.motion_consistency=8"])
    with pytest.raises(ConfigError, match="within 1..10"):
        load_config(JudgeConfig, overrides=["thresholds.video.visual_quality=11"])
    with pytest.raises(ConfigError, match="instruction"):
        JudgeConfig(image_prompt="Rate this edit.").validate()
    with pytest.raises(ConfigError, match="temperature"):
        load_config(JudgeConfig, overrides=["vlm.temperature=0"])


def test_configs_import_without_heavy_packages():
    """Build/trainer configs embed JudgeConfig/CaptionConfig; importing them stays cheap."""
    code = (
        "import sys, sama.vlm, sama.judge, sama.captioner, sama.encoders.tiny_vlm\n"
        "heavy = [m for m in ('torch', 'transformers', 'PIL') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
