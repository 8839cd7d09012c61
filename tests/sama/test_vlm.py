"""VLM loading, batched generation, captioner and judge on a tiny random Qwen2.5-VL.

The model is built by ``make_tiny_vlm`` (real classes, tiny config, saved with
``save_pretrained``) and loaded back offline through ``sama.vlm.load_vlm``. Random weights
answer garbage, which must come back as strings / unparseable runs, never a crash. One test
first teaches the tiny model (a few dozen optimizer steps) to answer a fixed JSON, so real
generation -> parsing -> averaging -> thresholds is checked on a valid answer too.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from sama.captioner import CaptionConfig, Captioner, clean_caption
from sama.encoders._hf import quiet_hf
from sama.encoders.tiny_vlm import SPECIAL_TOKENS, make_tiny_vlm
from sama.errors import ConfigError, ErrorKind, SampleError
from sama.judge import Judge, JudgeConfig, JudgePair, JudgeVLMConfig, passes
from sama.vlm import (
    VLMConfig,
    build_request,
    generate,
    generate_parts,
    load_vlm,
    sample_frame_indices,
)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models: intra-op threads only add overhead, and on a loaded 2-core machine they
    oversubscribe it (teaching step below: 1.9 s with 1 thread, 18.7 s with 2, measured)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory) -> str:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.setenv("TRANSFORMERS_OFFLINE", "1")
        return make_tiny_vlm(tmp_path_factory.mktemp("tiny_vlm"), seed=0)


@pytest.fixture(scope="module")
def vlm(tiny_dir):
    cfg = VLMConfig(model_id=tiny_dir, device="cpu", max_new_tokens=12, batch_size=2)
    model, processor = load_vlm(cfg)
    return model, processor, cfg


def _frames(n: int, seed: int, h: int = 56, w: int = 56) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, h, w, 3), dtype=np.uint8)


def test_tiny_vlm_is_saved_like_the_hub_repo_and_loads_offline(tiny_dir, vlm):
    model, processor, _ = vlm
    files = {p.name for p in Path(tiny_dir).iterdir()}
    assert {
        "config.json",
        "generation_config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
        "preprocessor_config.json",
        "chat_template.json",
    } <= files
    pre = json.loads((Path(tiny_dir) / "preprocessor_config.json").read_text())
    assert pre["image_processor_type"] == "Qwen2VLImageProcessor" and pre["min_pixels"] == 3136
    assert type(model).__name__ == "Qwen2_5_VLForConditionalGeneration"
    tok = processor.tokenizer
    ids = tok.convert_tokens_to_ids(SPECIAL_TOKENS)
    assert len(set(ids)) == len(SPECIAL_TOKENS) and tok.unk_token_id not in ids[1:]
    assert model.config.image_token_id == tok.convert_tokens_to_ids("<|image_pad|>")
    assert model.config.text_config.vocab_size == len(tok)
    assert tok.padding_side == "left"
    # the processor's image backend is PIL, whatever is installed
    assert type(processor.image_processor).__name__ == "Qwen2VLImageProcessorPil"


def test_requests_expand_image_placeholders(vlm):
    model, processor, cfg = vlm
    clip = _frames(10, 0)
    messages, images = build_request(["Original:", clip, "Edited:", clip[0], "Judge."], cfg)
    assert len(images) == len(sample_frame_indices(10, cfg.num_frames)) + 1 == 9
    text = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert text.count("<|vision_start|><|image_pad|><|vision_end|>") == 9
    assert text.endswith("<|im_start|>assistant\n")
    inputs = processor(text=[text], images=images, return_tensors="pt")
    grid = inputs["image_grid_thw"]
    assert grid.tolist() == [[1, 4, 4]] * 9  # 56x56 -> 4x4 patches of 14 px
    n_tokens = int((inputs["input_ids"] == model.config.image_token_id).sum())
    assert n_tokens == int(grid.prod(-1).sum()) // 4  # 2x2 merge
    assert int(inputs["mm_token_type_ids"].sum()) == n_tokens  # M-RoPE sees the images


def test_frame_sampling_and_downsizing():
    assert sample_frame_indices(81, 8) == [0, 11, 23, 34, 46, 57, 69, 80]
    assert sample_frame_indices(3, 8) == [0, 1, 2]
    assert sample_frame_indices(5, 1) == [0]
    cfg = VLMConfig(frame_max_pixels=56 * 56, max_pixels=112 * 112)
    _, imgs = build_request([_frames(2, 1, 224, 224), _frames(1, 2, 224, 448)[0]], cfg)
    assert [im.size for im in imgs] == [(56, 56), (56, 56), (158, 79)]


def test_generate_batches_mixed_inputs_deterministically(vlm):
    model, processor, cfg = vlm
    clip, image = _frames(6, 3), _frames(1, 4, 56, 84)[0]
    prompts = ["Describe this video.", "Describe this image.", "Say hello."]
    media = [clip, [image], []]
    a = generate(model, processor, prompts, media, cfg=cfg)
    assert len(a) == 3 and all(isinstance(x, str) for x in a)
    assert a == generate(model, processor, prompts, media, cfg=cfg)  # greedy: repeatable
    # sampling: per-row seeds, the same answer whatever the batch it lands in
    s_cfg = VLMConfig(**{**vars(cfg), "do_sample": True, "temperature": 1.0, "batch_size": 3})
    reqs = [[clip, "Describe."]] * 3
    sampled = generate_parts(model, processor, reqs, s_cfg, seeds=[1, 2, 1])
    assert sampled[0] == sampled[2] != sampled[1]
    one = VLMConfig(**{**vars(s_cfg), "batch_size": 1})
    assert generate_parts(model, processor, reqs[:1], one, seeds=[2]) == [sampled[1]]
    with pytest.raises(ValueError, match="seeds"):
        generate_parts(model, processor, reqs, s_cfg, seeds=[1])


def test_load_vlm_names_a_missing_local_model(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_vlm(VLMConfig(model_id=str(tmp_path / "nope"), device="cpu"))
    with pytest.raises(ConfigError, match="batch_size"):
        VLMConfig(batch_size=0).validate()


def test_clean_caption():
    assert clean_caption("  assistant\nA dog   runs.<|im_end|>") == "A dog runs."
    assert clean_caption('Caption: "A red car turns left."') == "A red car turns left."
    assert clean_caption("```\nA cat sleeps.\n```") == "A cat sleeps."
    assert clean_caption("<|im_start|> <|endoftext|>  ") == ""


def test_captioner_captions_a_batch_of_two_clips(tiny_dir):
    vlm_cfg = VLMConfig(model_id=tiny_dir, device="cpu", max_new_tokens=16, num_frames=4)
    captioner = Captioner.load(CaptionConfig(vlm=vlm_cfg))
    clips = [_frames(9, 5), list(_frames(5, 6, 64, 96))]  # an array and a list of frames
    out = captioner.caption(clips)
    assert len(out) == 2
    for c in out:  # random weights: some text, or an explicit error row, never a crash
        assert (isinstance(c, str) and c == clean_caption(c) and c) or (
            isinstance(c, SampleError) and c.kind is ErrorKind.ENCODE_ERROR
        )
    assert any(isinstance(c, str) for c in out)
    assert captioner.caption(clips) == out  # greedy by default


def test_judge_on_random_weights_records_unparseable_runs(tiny_dir):
    cfg = JudgeConfig(
        vlm=JudgeVLMConfig(model_id=tiny_dir, device="cpu", max_new_tokens=12, num_frames=3),
        runs=3,
    )
    judge = Judge.load(cfg)
    pairs = [
        JudgePair(_frames(1, 7)[0], _frames(1, 8)[0], "Make it snow.", "img-1"),
        JudgePair(_frames(5, 9), list(_frames(5, 10)), "Add a hat.", "vid-1"),
        JudgePair(_frames(1, 7)[0], _frames(5, 9), "Broken pair.", "bad-1"),
    ]
    results = judge.score(pairs)
    assert [r.media_type for r in results] == ["image", "video", None]
    for r in results[:2]:
        assert len(r.raw) == 3 and all(isinstance(a, str) for a in r.raw)
        assert len(set(r.raw)) > 1  # sampled runs differ
        assert r.n_valid == 0 and r.scores is None and "unparseable" in r.error
        assert r.to_error().kind is ErrorKind.JUDGE_UNPARSEABLE
        assert not passes(r.scores, r.media_type, cfg.thresholds)
    assert results[2].to_error().kind is ErrorKind.MISMATCH and results[2].raw == []
    assert [r.raw for r in judge.score(pairs[:2])] == [r.raw for r in results[:2]]


def _teach(model, processor, judge: Judge, lessons: list[tuple[JudgePair, str]]) -> None:
    """A few Adam steps until the model answers each pair's request with the given text."""
    import torch

    batches = []
    for pair, answer in lessons:
        messages, images = build_request(judge.request(pair), judge.cfg.vlm)
        prompt = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        n_prompt = processor(text=[prompt], images=images)["input_ids"][0].__len__()
        full = processor(text=[prompt + answer + "<|im_end|>"], images=images, return_tensors="pt")
        labels = full["input_ids"].clone()
        labels[:, :n_prompt] = -100
        batches.append((full, labels))
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    with torch.random.fork_rng(devices=[]):
        for _ in range(150):
            losses = [model(**full, labels=labels).loss for full, labels in batches]
            loss = sum(losses) / len(losses)
            opt.zero_grad()
            loss.backward()
            opt.step()
            if loss.item() < 2e-3:
                break
    model.eval()
    assert loss.item() < 2e-3, loss.item()


def test_judge_on_a_taught_model_parses_averages_and_filters(tiny_dir, tmp_path):
    vlm_cfg = JudgeVLMConfig(model_id=tiny_dir, device="cpu", max_new_tokens=48, num_frames=2)
    cfg = JudgeConfig(
        vlm=vlm_cfg,
        runs=2,
        image_prompt="Judge: {instruction}",
        video_prompt="Judge: {instruction}",
    )
    judge = Judge.load(cfg)
    image = JudgePair(_frames(1, 11)[0], _frames(1, 12)[0], "Make it snow.", "img-2")
    video = JudgePair(_frames(2, 13), _frames(2, 14), "Add a hat.", "vid-2")
    good = '{"instruction_following": 9, "visual_quality": 9, "content_preservation": 10}'
    shaky = "```json\n{'IF': 8, 'VQ': 9, 'CP': 8, 'MC': 6,}\n```"  # fails MC >= 8
    _teach(judge.model, judge.processor, judge, [(image, good), (video, shaky)])
    # round trip through save_pretrained + the real loading code
    with quiet_hf():
        judge.model.save_pretrained(tmp_path / "taught")
    for name in ("tokenizer.json", "tokenizer_config.json", "preprocessor_config.json"):
        (tmp_path / "taught" / name).write_bytes((Path(tiny_dir) / name).read_bytes())
    (tmp_path / "taught" / "chat_template.json").write_bytes(
        (Path(tiny_dir) / "chat_template.json").read_bytes()
    )
    cfg.vlm.model_id = str(tmp_path / "taught")
    r_img, r_vid = Judge.load(cfg).score([image, video])
    assert r_img.n_valid == 2 and r_img.scores == {
        "instruction_following": 9.0,
        "visual_quality": 9.0,
        "content_preservation": 10.0,
    }
    assert passes(r_img.scores, "image", cfg.thresholds)
    assert r_vid.n_valid == 2 and r_vid.scores["motion_consistency"] == 6.0
    assert not passes(r_vid.scores, "video", cfg.thresholds)
