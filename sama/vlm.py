"""Shared loading and batched generation of a vision-language model (captioner, VLM judge).

SAMA.md §4 "Data filtering" scores every edit pair with a Qwen2.5-VL judge; the build's
captioner (issue 4, step 5) describes clips. Both load the model here, through transformers:
``AutoModelForImageTextToText.from_pretrained(..., use_safetensors=True)``.

Processor. For the Qwen2-VL family (``qwen2_vl``, ``qwen2_5_vl``) we do not use
``AutoProcessor``: in transformers 5.24 ``Qwen2_5_VLProcessor`` cannot be constructed without
torchvision, which this project does not install (its video-processor slot is type-checked
against a torchvision-only class, and ``AutoProcessor`` loads ``Qwen2VLVideoProcessor``, which
imports torchvision). ``QwenImageProcessor`` below is that same class with the video slot
removed: the checkpoint's tokenizer, its image processor pinned to the PIL backend (the same
pixels with or without torchvision installed, as in ``sama.encoders.siglip``) and its chat
template, loaded from the repo's own files; transformers does the placeholder expansion and the
M-RoPE token types. Other model types go through ``AutoProcessor`` (untested here).

Clips are given to the model as a sequence of still images, ``num_frames`` sampled uniformly,
not through the processor's video path (which needs torchvision). Each frame then costs the
tokens of one image (Qwen's video path would merge frame pairs), so frames are downsized to
``frame_max_pixels``.

Sampling. Several judge runs (SAMA.md: 3 runs averaged) are only different if they sample.
``do_sample=True`` draws each row's tokens with the Gumbel-max trick from a ``torch.Generator``
seeded per row (``sama.rng.derive_seed``): an exact sample of softmax(logits / temperature),
reproducible per sample whatever the batch it lands in, and the global RNG is never touched.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from sama.config import check
from sama.rng import derive_seed

if TYPE_CHECKING:
    import numpy as np
    from PIL import Image

    Visual = Image.Image | np.ndarray | Sequence[Any]

QWEN25_VL_7B = "Qwen/Qwen2.5-VL-7B-Instruct"
QWEN_VL_TYPES = ("qwen2_vl", "qwen2_5_vl")
_DEVICE_RE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


@dataclass
class VLMConfig:
    """A vision-language model and how it generates. Recorded in provenance."""

    model_id: str = QWEN25_VL_7B  # hub id or a local directory laid out like the hub repo
    revision: str | None = None
    device: str = "auto"  # auto = cuda when visible, else cpu
    device_map: str | None = None  # e.g. "auto": shard a large model (72B) over GPUs
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"  # auto: bf16 cuda, fp32 cpu
    attn_implementation: str | None = None  # None = transformers' default (sdpa)
    max_new_tokens: int = 128
    batch_size: int = 4
    num_frames: int = 8  # frames sampled uniformly from each clip
    max_pixels: int = 1024 * 28 * 28  # a still image is downsized to at most this many pixels
    frame_max_pixels: int = 256 * 28 * 28  # each clip frame (<= 256 tokens per frame)
    do_sample: bool = False
    temperature: float = 0.7
    top_p: float = 1.0
    repetition_penalty: float = 1.05  # the Qwen2.5-VL checkpoints' default
    seed: int = 0

    def validate(self) -> VLMConfig:
        check(
            isinstance(self.model_id, str) and bool(self.model_id.strip()),
            f"vlm.model_id must be a hub id (e.g. {QWEN25_VL_7B!r}) or a local directory",
        )
        check(
            isinstance(self.device, str) and bool(_DEVICE_RE.match(self.device)),
            f"vlm.device={self.device!r}: use 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'",
        )
        check(
            self.dtype in ("auto", "float32", "bfloat16", "float16"),
            f"vlm.dtype={self.dtype!r}: use auto, float32, bfloat16 or float16",
        )
        for name in ("max_new_tokens", "batch_size", "num_frames"):
            v = getattr(self, name)
            check(
                isinstance(v, int) and not isinstance(v, bool) and v >= 1,
                f"vlm.{name}={v!r}: must be an integer >= 1",
            )
        for name in ("max_pixels", "frame_max_pixels"):
            v = getattr(self, name)
            check(
                isinstance(v, int) and v >= 28 * 28,
                f"vlm.{name}={v!r}: must be an integer >= 784 (one 28x28 token)",
            )
        check(self.temperature > 0, f"vlm.temperature={self.temperature}: must be > 0")
        check(0 < self.top_p <= 1, f"vlm.top_p={self.top_p}: must be in (0, 1]")
        check(
            self.repetition_penalty > 0,
            f"vlm.repetition_penalty={self.repetition_penalty}: must be > 0 (1.0 = off)",
        )
        return self


# --- visual inputs -------------------------------------------------------------------------


def is_clip(visual: Any) -> bool:
    """A clip is a (T, H, W, 3) array or a sequence of frames; an image is PIL or (H, W, 3)."""
    if hasattr(visual, "ndim"):
        return visual.ndim == 4
    return isinstance(visual, list | tuple)


def sample_frame_indices(num_total: int, num_frames: int) -> list[int]:
    """``num_frames`` indices spread uniformly over ``[0, num_total)`` (all when fewer)."""
    if num_total <= num_frames:
        return list(range(num_total))
    step = (num_total - 1) / (num_frames - 1) if num_frames > 1 else 0.0
    return [round(i * step) for i in range(num_frames)]


def to_pil(image: Any, max_pixels: int) -> Image.Image:
    """PIL RGB image from PIL or a uint8 (H, W, 3) array, downsized to <= ``max_pixels``."""
    import numpy as np
    from PIL import Image

    if not isinstance(image, Image.Image):
        arr = np.asarray(image)
        if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[-1] != 3:
            raise TypeError(f"expected a uint8 (H, W, 3) frame, got {arr.dtype} {arr.shape}")
        image = Image.fromarray(arr)
    image = image.convert("RGB")
    w, h = image.size
    if w * h > max_pixels:
        s = (max_pixels / (w * h)) ** 0.5
        image = image.resize((max(1, int(w * s)), max(1, int(h * s))), Image.Resampling.BICUBIC)
    return image


def build_request(parts: Sequence[Any], cfg: VLMConfig) -> tuple[list[dict], list[Any]]:
    """Interleaved text / images / clips -> (chat messages, flat list of PIL images in order)."""
    content: list[dict] = []
    images: list[Any] = []
    for part in parts:
        if isinstance(part, str):
            content.append({"type": "text", "text": part})
            continue
        if is_clip(part):
            frames = [part[i] for i in sample_frame_indices(len(part), cfg.num_frames)]
            pil = [to_pil(f, cfg.frame_max_pixels) for f in frames]
        else:
            pil = [to_pil(part, cfg.max_pixels)]
        content.extend({"type": "image"} for _ in pil)
        images.extend(pil)
    return [{"role": "user", "content": content}], images


# --- loading -------------------------------------------------------------------------------


@functools.cache
def _qwen_image_processor_class() -> type:
    from transformers import Qwen2_5_VLProcessor
    from transformers.processing_utils import ProcessorMixin

    class QwenImageProcessor(Qwen2_5_VLProcessor):
        """``Qwen2_5_VLProcessor`` without its (torchvision-only) video processor."""

        def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
            self.image_token = getattr(tokenizer, "image_token", None) or "<|image_pad|>"
            self.video_token = getattr(tokenizer, "video_token", None) or "<|video_pad|>"
            self.image_token_id = tokenizer.convert_tokens_to_ids(self.image_token)
            self.video_token_id = tokenizer.convert_tokens_to_ids(self.video_token)
            ProcessorMixin.__init__(self, image_processor, tokenizer, chat_template=chat_template)

    return QwenImageProcessor


def resolve_vlm_dtype(name: str, device: str) -> Any:
    import torch

    if name == "auto":
        return torch.bfloat16 if device.startswith("cuda") else torch.float32
    return getattr(torch, name)


def _load_processor(cfg: VLMConfig, model_type: str) -> Any:
    from transformers import AutoProcessor

    if model_type in QWEN_VL_TYPES:  # see the module docstring
        return _qwen_image_processor_class().from_pretrained(
            cfg.model_id, revision=cfg.revision, backend="pil"
        )
    return AutoProcessor.from_pretrained(cfg.model_id, revision=cfg.revision)


def load_vlm(cfg: VLMConfig | None = None) -> tuple[Any, Any]:
    """(model, processor) for ``cfg.model_id``, on ``cfg.device`` in eval mode, offline-friendly.

    The processor is loaded first: a broken repo fails before a large model is read.
    """
    cfg = (cfg or VLMConfig()).validate()
    from transformers import AutoConfig, AutoModelForImageTextToText

    from sama.encoders._hf import check_loading_info, load_or_explain
    from sama.encoders.config import resolve_device

    device = resolve_device(cfg.device)
    where = ("vlm", cfg.model_id, None, cfg.revision)
    config = load_or_explain(
        lambda: AutoConfig.from_pretrained(cfg.model_id, revision=cfg.revision), *where
    )
    processor = load_or_explain(lambda: _load_processor(cfg, config.model_type), *where)
    processor.tokenizer.padding_side = "left"  # batched generation appends on the right
    kw: dict[str, Any] = {"dtype": resolve_vlm_dtype(cfg.dtype, device)}
    if cfg.device_map:
        kw["device_map"] = cfg.device_map
    if cfg.attn_implementation:
        kw["attn_implementation"] = cfg.attn_implementation
    model, info = load_or_explain(
        lambda: AutoModelForImageTextToText.from_pretrained(
            cfg.model_id,
            revision=cfg.revision,
            config=config,
            use_safetensors=True,
            output_loading_info=True,
            **kw,
        ),
        *where,
    )
    check_loading_info(info, "vlm")
    if not cfg.device_map:
        model = model.to(device)
    model.eval()
    return model, processor


# --- generation ----------------------------------------------------------------------------


class SeededSampler:
    """Logits processor: per-row Gumbel noise from a per-row generator (see module docstring).

    Added after transformers' own processors (repetition penalty) under greedy decoding, the
    argmax of ``logits / T + Gumbel`` is a sample of softmax(logits / T), top-p truncated.
    """

    def __init__(self, seeds: Sequence[int], temperature: float, top_p: float) -> None:
        import torch

        self.generators = [torch.Generator().manual_seed(int(s)) for s in seeds]
        self.temperature = temperature
        self.top_p = top_p

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import torch

        scores = scores.float() / self.temperature
        if self.top_p < 1.0:
            sorted_s, order = scores.sort(dim=-1, descending=True)
            cum = sorted_s.softmax(-1).cumsum(-1)
            drop_sorted = (cum - sorted_s.softmax(-1)) > self.top_p  # keep the first past top_p
            drop = drop_sorted.scatter(-1, order, drop_sorted)
            scores = scores.masked_fill(drop, float("-inf"))
        u = torch.stack([torch.rand(scores.shape[-1], generator=g) for g in self.generators])
        u = u.clamp_(1e-10, 1.0 - 1e-7).to(scores.device)
        return scores - torch.log(-torch.log(u))


def _generate_batch(model: Any, processor: Any, requests: list, cfg: VLMConfig, seeds) -> list:
    import torch
    from transformers import GenerationConfig, LogitsProcessorList

    texts, images = [], []
    for parts in requests:
        messages, imgs = build_request(parts, cfg)
        texts.append(
            processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        )
        images.extend(imgs)
    inputs = processor(text=texts, images=images or None, padding=True, return_tensors="pt")
    inputs = inputs.to(model.device)
    base = model.generation_config
    gen = GenerationConfig(
        max_new_tokens=cfg.max_new_tokens,
        do_sample=False,  # sampling, when on, is SeededSampler's
        num_beams=1,
        temperature=1.0,  # neutral values, so the checkpoint's sampling settings stay unused
        top_p=1.0,
        top_k=50,
        repetition_penalty=cfg.repetition_penalty,
        eos_token_id=base.eos_token_id,
        pad_token_id=base.pad_token_id
        if base.pad_token_id is not None
        else processor.tokenizer.pad_token_id,
    )
    processors = LogitsProcessorList()
    if cfg.do_sample:
        processors.append(SeededSampler(seeds, cfg.temperature, cfg.top_p))
    with torch.inference_mode():
        out = model.generate(**inputs, generation_config=gen, logits_processor=processors)
    new_tokens = out[:, inputs["input_ids"].shape[1] :]
    return processor.batch_decode(new_tokens, skip_special_tokens=True)


def generate_parts(
    model: Any,
    processor: Any,
    requests: Sequence[Sequence[Any]],
    cfg: VLMConfig,
    seeds: Sequence[int] | None = None,
) -> list[str]:
    """One answer per request; a request is a list of parts: text, images and clips, in order.

    ``seeds`` (one per request) make sampled answers reproducible per sample; without them the
    seed is derived from ``cfg.seed`` and the request's position in this call.
    """
    if seeds is None:
        seeds = [derive_seed(cfg.seed, "vlm", i) for i in range(len(requests))]
    if len(seeds) != len(requests):
        raise ValueError(f"got {len(seeds)} seeds for {len(requests)} requests")
    answers: list[str] = []
    for i in range(0, len(requests), cfg.batch_size):
        chunk = list(requests[i : i + cfg.batch_size])
        answers.extend(_generate_batch(model, processor, chunk, cfg, seeds[i : i + len(chunk)]))
    return answers


def generate(
    model: Any,
    processor: Any,
    prompts: Sequence[str],
    media: Sequence[Any] | None = None,
    *,
    cfg: VLMConfig,
    seeds: Sequence[int] | None = None,
) -> list[str]:
    """Answers to ``prompts``; the visuals of ``media[i]`` come before prompt ``i``.

    ``media[i]`` is a list of visuals, each an image (PIL or (H, W, 3) uint8) or a clip (a list
    of frames or a (T, H, W, 3) array); a bare PIL image or array counts as one visual. So one
    clip given as a list of frames is ``[frames]``.
    """
    media = media if media is not None else [[] for _ in prompts]
    if len(media) != len(prompts):
        raise ValueError(f"got {len(media)} media entries for {len(prompts)} prompts")
    requests = []
    for prompt, m in zip(prompts, media, strict=True):
        visuals = list(m) if isinstance(m, list | tuple) else [m]
        requests.append([*visuals, prompt])
    return generate_parts(model, processor, requests, cfg, seeds)
