"""VLM captioner for clips that come without a caption (issue 4, step 5).

Many corpora ship captions in their manifest; the build uses those and calls this only for the
rest. The model is any vision-language model ``sama.vlm`` loads (default Qwen2.5-VL-7B); the
prompt is in config and recorded in provenance with the model id. Decoding is greedy by default
(``vlm.do_sample=false``), so a re-run writes the same caption.

A clip is a list of frames or a (T, H, W, 3) uint8 array; ``vlm.num_frames`` frames are
sampled uniformly and shown to the model as images (see ``sama.vlm``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sama.config import check
from sama.errors import ErrorKind, SampleError
from sama.vlm import VLMConfig, generate_parts, load_vlm

DEFAULT_CAPTION_PROMPT = (
    "Describe this video in one detailed sentence: the main subjects and their appearance, "
    "what they do, the setting, and how the camera moves. Answer with the sentence only."
)
STAGE = "caption"

# Chat-template pieces a model may echo, and labels it may put before the caption.
_SPECIAL_TOKEN = re.compile(r"<\|[^|>]{1,40}\|>")
_ROLE_PREFIX = re.compile(r"^\s*(?:assistant|system|user)\s*[:\n]", re.IGNORECASE)
_LABEL_PREFIX = re.compile(
    r"^\s*(?:\*\*)?(?:caption|description|answer|video description)(?:\*\*)?\s*:\s*",
    re.IGNORECASE,
)
_FENCE = re.compile(r"^```[a-z]*\s*|\s*```$")
_QUOTES = ('"', "'", "\u201c", "\u201d", "`")


@dataclass
class CaptionConfig:
    prompt: str = DEFAULT_CAPTION_PROMPT
    vlm: VLMConfig = field(default_factory=VLMConfig)

    def validate(self) -> CaptionConfig:
        check(
            isinstance(self.prompt, str) and bool(self.prompt.strip()),
            "caption.prompt must be a non-empty instruction for the VLM",
        )
        self.vlm.validate()
        return self


def clean_caption(text: str) -> str:
    """Strip chat artefacts, labels, fences and quotes; collapse whitespace. May return ""."""
    text = _SPECIAL_TOKEN.sub(" ", text)
    while _ROLE_PREFIX.match(text):
        text = _ROLE_PREFIX.sub("", text, count=1)
    text = _FENCE.sub("", text.strip())
    text = _LABEL_PREFIX.sub("", text)
    text = " ".join(text.split())
    while len(text) >= 2 and text[0] in _QUOTES and text[-1] in _QUOTES:
        text = text[1:-1].strip()
    return text


class Captioner:
    """A loaded VLM + the caption prompt; ``caption`` a batch of clips."""

    def __init__(self, model: Any, processor: Any, cfg: CaptionConfig) -> None:
        self.model = model
        self.processor = processor
        self.cfg = cfg

    @classmethod
    def load(cls, cfg: CaptionConfig | None = None) -> Captioner:
        cfg = (cfg or CaptionConfig()).validate()
        model, processor = load_vlm(cfg.vlm)
        return cls(model, processor, cfg)

    def caption(
        self, clips: Sequence[Any], sample_ids: Sequence[str] | None = None
    ) -> list[str | SampleError]:
        """One cleaned caption per clip, or a ``SampleError`` (kind encode_error) in its place.

        Errors are returned, not raised, so one empty answer does not fail the whole batch;
        the stage turns them into error rows. ``sample_ids`` seed sampling when
        ``vlm.do_sample`` is on (ignored for greedy decoding).
        """
        from sama.rng import derive_seed

        requests = [[clip, self.cfg.prompt] for clip in clips]
        seeds = None
        if sample_ids is not None:
            seeds = [derive_seed(self.cfg.vlm.seed, "caption", s) for s in sample_ids]
        raw = generate_parts(self.model, self.processor, requests, self.cfg.vlm, seeds)
        out: list[str | SampleError] = []
        for answer in raw:
            text = clean_caption(answer)
            if text:
                out.append(text)
            else:
                msg = f"the captioner returned no text (raw answer {answer[:80]!r})"
                out.append(SampleError(ErrorKind.ENCODE_ERROR, msg, stage=STAGE))
        return out
