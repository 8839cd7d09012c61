"""A tiny random-weight Qwen2.5-VL laid out like the hub repo, for tests and the demo.

The captioner and the VLM judge (SAMA.md §4 "Data filtering") load a real Qwen2.5-VL checkpoint
through ``sama.vlm.load_vlm``. Tests cannot download one, and a stand-in class would skip the
code that matters (``from_pretrained``, the chat template, image placeholders, M-RoPE), so we
build the real ``Qwen2_5_VLForConditionalGeneration`` from a tiny config and write the files
the hub repo ``Qwen/Qwen2.5-VL-7B-Instruct`` holds, in the same formats:

    config.json, generation_config.json, model.safetensors     (save_pretrained)
    tokenizer.json, tokenizer_config.json                       (Qwen2Tokenizer.save_pretrained)
    preprocessor_config.json  (Qwen2VLImageProcessor, min_pixels/max_pixels keys like the repo)
    chat_template.json        (the Qwen2-VL chat template)

The tokenizer is a byte-level BPE trained here (``tokenizers``) on a few sentences, with
Qwen2's pre-tokenizer and the special tokens Qwen2.5-VL needs (``<|im_start|>``,
``<|vision_start|>``, ``<|image_pad|>``, ...). Sizes: text hidden 64, 2 layers; vision hidden
32, 2 blocks, patch 14, merge 2 (so a 56x56 image is 4x4 patches -> 4 LLM tokens).

No ``Qwen2_5_VLProcessor`` is saved through ``save_pretrained``: in transformers 5.24 that
class cannot even be constructed without torchvision (its video-processor slot is
type-checked against a torchvision-only class). ``sama.vlm`` loads the same files without it.
Everything is deterministic given ``seed``; the global RNG is left untouched.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sama.rng import derive_seed

# The special tokens of the Qwen2.5-VL tokenizer, in the real repo's order.
SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
]

# The chat template of Qwen/Qwen2.5-VL-7B-Instruct (chat_template.json).
QWEN2_VL_CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}"
    "{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}"
    "<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

_CORPUS = [
    "system user assistant You are a helpful assistant.",
    "Describe this video in one detailed sentence.",
    "A dog runs along a sandy beach at sunset while the camera pans left.",
    "A man rides a red bicycle down a steep hill in the rain.",
    "Two children play football in a green park; the camera is static.",
    "Original image: Edited image: Original video frames: Edited video frames:",
    "Rate the edit from 1 to 10 and answer with only a JSON object.",
    '{"instruction_following": 9, "visual_quality": 8, "content_preservation": 10, '
    '"motion_consistency": 7}',
    "Replace the red car with a blue truck. Make it snow. Add a hat to the man.",
    "0 1 2 3 4 5 6 7 8 9 10",
]
TINY_IMAGE_MIN_PIXELS = 56 * 56
TINY_IMAGE_MAX_PIXELS = 112 * 112


def _make_tokenizer(out: Path) -> Any:
    """Byte-level BPE trained here, wrapped in transformers' ``Qwen2Tokenizer``."""
    from tokenizers import AddedToken, Regex, Tokenizer, models, pre_tokenizers, trainers
    from transformers import Qwen2Tokenizer
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    trainer = trainers.BpeTrainer(
        vocab_size=420,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),  # every byte stays encodable
        show_progress=False,
    )
    bpe.train_from_iterator(_CORPUS, trainer)
    trained = json.loads(bpe.to_str())["model"]
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in trained["merges"]]
    tokenizer = Qwen2Tokenizer(
        vocab=trained["vocab"],
        merges=merges,
        errors="replace",
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token=None,
    )
    tokenizer.add_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS])
    tokenizer.save_pretrained(out)
    return tokenizer


def _write_processor_files(out: Path) -> None:
    """preprocessor_config.json and chat_template.json in the hub repo's own format."""
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import (
        Qwen2VLImageProcessorPil,
    )

    image_processor = Qwen2VLImageProcessorPil(
        min_pixels=TINY_IMAGE_MIN_PIXELS, max_pixels=TINY_IMAGE_MAX_PIXELS
    )
    cfg = image_processor.to_dict()
    # The real repo names the torchvision-agnostic class and keeps min/max_pixels keys.
    cfg["image_processor_type"] = "Qwen2VLImageProcessor"
    cfg["processor_class"] = "Qwen2_5_VLProcessor"
    cfg["min_pixels"], cfg["max_pixels"] = TINY_IMAGE_MIN_PIXELS, TINY_IMAGE_MAX_PIXELS
    cfg.pop("size", None)
    (out / "preprocessor_config.json").write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
    chat = {"chat_template": QWEN2_VL_CHAT_TEMPLATE}
    (out / "chat_template.json").write_text(json.dumps(chat, indent=2) + "\n")


def _model_config(tokenizer: Any) -> Any:
    from transformers import Qwen2_5_VLConfig

    ids = dict(zip(SPECIAL_TOKENS, tokenizer.convert_tokens_to_ids(SPECIAL_TOKENS), strict=True))
    text = {
        "vocab_size": len(tokenizer),
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 4096,
        # head_dim 16 -> 8 rotary frequencies split over (time, height, width)
        "rope_parameters": {"rope_type": "default", "rope_theta": 1e6, "mrope_section": [2, 3, 3]},
        "bos_token_id": ids["<|endoftext|>"],
        "eos_token_id": ids["<|im_end|>"],
        "pad_token_id": ids["<|endoftext|>"],
    }
    vision = {
        "depth": 2,
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_heads": 2,
        "out_hidden_size": 64,
        "patch_size": 14,
        "spatial_merge_size": 2,
        "temporal_patch_size": 2,
        "window_size": 56,
        "fullatt_block_indexes": [1],
    }
    return Qwen2_5_VLConfig(
        text_config=text,
        vision_config=vision,
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
    )


def make_tiny_vlm(out_dir: str | Path, seed: int = 0) -> str:
    """Write a tiny random Qwen2.5-VL + tokenizer + processor files to ``out_dir``; return it.

    ``sama.vlm.load_vlm(VLMConfig(model_id=out_dir))`` loads it offline.
    """
    import torch
    from transformers import GenerationConfig, Qwen2_5_VLForConditionalGeneration

    from sama.encoders._hf import quiet_hf

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with torch.random.fork_rng(devices=[]), quiet_hf():
        tokenizer = _make_tokenizer(out)
        _write_processor_files(out)
        torch.manual_seed(derive_seed(seed, "tiny-vlm"))
        model = Qwen2_5_VLForConditionalGeneration(_model_config(tokenizer))
        end, pad = tokenizer.convert_tokens_to_ids(["<|im_end|>", "<|endoftext|>"])
        # The real repo's generation_config.json (near-greedy sampling); sama.vlm overrides it.
        model.generation_config = GenerationConfig(
            bos_token_id=pad,
            eos_token_id=[end, pad],
            pad_token_id=pad,
            do_sample=True,
            repetition_penalty=1.05,
            temperature=0.1,
            top_p=0.001,
            top_k=1,
        )
        model.save_pretrained(out, safe_serialization=True)
    note = {"seed": seed, "note": "random weights for tests and demos; not a real model"}
    (out / "TINY_MODEL.json").write_text(json.dumps(note, indent=2) + "\n")
    return str(out)
