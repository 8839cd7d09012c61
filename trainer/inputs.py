"""Loader samples -> model inputs: pretext sources and prompts, text embeddings, shape groups.

``SampleTransform`` is the loader's per-sample hook (it runs in the loader's worker threads):

- stage-0 clips get their pretext task, corrupted source and prompt from
  ``sama.pretext.make_pretext_sample`` with the generator of ``(seed, rng_id, epoch)`` (SAMA.md 3);
  clips outside stage 0 (or 1-frame clips) are the ``none`` task;
- edit pairs keep their stored source and get the ``[Video edit] `` instruction prompt (SAMA.md 3);
- the prompt's stored umT5 embedding is picked out of the row's ``text_embeds`` when present.

A batch is bucket-homogeneous in its *target* shape, but stage-0 sources are not: a sped-up
source has ceil(T'/2) latent frames, a ``none`` source may be absent. ``group_by_source`` splits
a batch into sub-batches whose sources stack; the loop runs one forward/backward per group and
weights each by its share of the batch, which is exactly the batch mean of the per-sample loss.

Shape legend: C latent channels, T/H/W latent frames/height/width, N anchors, K tokens per
anchor, S SigLIP width, L text tokens, D text width, B batch.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import torch

from sama.pretext import PretextConfig, PretextTask, make_pretext_sample
from trainer.losses import FlowConfig, sample_noise

EDIT_PREFIX = "[Video edit]"


def edit_prompt(instruction: str) -> str:
    """``[Video edit] <instruction>`` (added once), as the released inference does."""
    text = instruction.strip()
    return text if text.startswith(EDIT_PREFIX) else f"{EDIT_PREFIX} {text}"


class SampleTransform:
    """The loader's ``transform(sample, epoch)`` hook: source, prompt, text embedding, and the
    sample's flow-matching timestep and noise (drawn here, in the loader's background threads,
    so that a 14B-size latent's ``randn`` stays off the training step).

    An identity source (the ``none`` task) is the target tensor itself, not a copy: nothing
    writes into either in place (the loader's transform contract, ``group_by_source`` and the
    validation sampler only read them), and ``collate``/``group_by_source`` stack them into
    batches of their own, so source and target never share memory where the model sees them."""

    def __init__(
        self,
        pretext: PretextConfig | None,
        flow: FlowConfig,
        seed: int,
        black_latent: torch.Tensor | None,
        none_source: str = "identity",
    ) -> None:
        self.pretext = pretext  # None: no pretext tasks (stage 1)
        self.flow = flow
        self.seed = seed
        self.black_latent = black_latent
        self.none_source = pretext.none_source if pretext is not None else none_source

    def __call__(self, sample: dict[str, Any], epoch: int) -> dict[str, Any]:
        target_CTHW = sample["target_latents"].float()
        info: dict[str, Any] | None = None
        if sample["kind"] == "clip":
            caption = sample["caption"] or ""
            if self.pretext is not None and target_CTHW.shape[1] >= 2:
                source, prompt, info = make_pretext_sample(
                    target_CTHW,
                    caption,
                    self.black_latent,
                    self.pretext,
                    self.seed,
                    sample["rng_id"],
                    epoch,
                    copy_identity=False,
                )
            else:
                source = target_CTHW if self.none_source == "identity" else None
                prompt, info = caption, {"task": PretextTask.NONE.value}
        else:
            source = sample["source_latents"].float()
            prompt = edit_prompt(sample["instruction"])
        sample["target_latents"] = target_CTHW
        sample["source_latents"] = source
        sample["anchor_tokens"] = sample["anchor_tokens"].float()
        sample["prompt"] = prompt
        sample["pretext"] = info
        sample["text_embed"] = _stored_embedding(sample, prompt)
        sample.pop("text_embeds", None)
        anchors_NS = sample["anchor_tokens"].flatten(0, 1)
        noise = sample_noise(
            self.flow,
            self.seed,
            sample["rng_id"],
            epoch,
            tuple(target_CTHW.shape),
            tuple(anchors_NS.shape),
        )
        sample["t"] = noise.t
        sample["noise"] = noise.latent_CTHW
        sample["semantic_noise"] = noise.semantic_NS
        return sample


def _stored_embedding(sample: dict[str, Any], prompt: str) -> torch.Tensor | None:
    prompts, embeds = sample.get("text_prompts"), sample.get("text_embeds")
    if not prompts or embeds is None:
        return None
    for p, e in zip(prompts, embeds, strict=True):
        if p == prompt:
            return e.float()
    return None


def free_memory() -> None:
    """Return freed encoder memory: Python's references, then the CUDA cache."""
    import gc

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


class TextEmbedder:
    """Prompt embeddings for rows without stored ones: umT5 loaded on first use, LRU cache."""

    def __init__(self, encoder_cfg: Any, cache_size: int = 4096) -> None:
        self.encoder_cfg = encoder_cfg
        self.encoder = None
        self.cache: OrderedDict[str, torch.Tensor] = OrderedDict()
        self.cache_size = cache_size
        self.online_prompts = 0

    def release(self) -> None:
        """Free the encoder (umT5-XXL is ~11 GB); cached embeddings stay."""
        if self.encoder is not None:
            self.encoder = None
            free_memory()

    def embed(self, prompts: list[str]) -> list[torch.Tensor]:
        missing = [p for p in dict.fromkeys(prompts) if p not in self.cache]
        if missing:
            if self.encoder is None:
                from sama.encoders.text import UMT5TextEncoder

                self.encoder = UMT5TextEncoder.load(self.encoder_cfg)
            for p, e in zip(missing, self.encoder.encode(missing), strict=True):
                self.cache[p] = e
            self.online_prompts += len(missing)
        out = []
        for p in prompts:
            self.cache.move_to_end(p)
            out.append(self.cache[p])
        while len(self.cache) > self.cache_size:
            self.cache.popitem(last=False)
        return out


def pad_text(embeds: list[torch.Tensor], length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-prompt ``[L_i, D]`` -> zero-padded ``[B, length, D]`` and mask ``[B, length]``
    (WanPipeline pads umT5 outputs to 512 with zeros; longer prompts are cut)."""
    dim = embeds[0].shape[-1]
    out_BLD = torch.zeros(len(embeds), length, dim)
    mask_BL = torch.zeros(len(embeds), length)
    for i, e in enumerate(embeds):
        n = min(e.shape[0], length)
        out_BLD[i, :n] = e[:n].float()
        mask_BL[i, :n] = 1.0
    return out_BLD, mask_BL


@dataclass
class Group:
    """Samples of one batch whose sources have the same shape (or no source): one forward."""

    indices: list[int]
    target_BCTHW: torch.Tensor
    source_BCTHW: torch.Tensor | None
    anchors_BNS: torch.Tensor  # anchors flattened to N*K tokens
    t_B: torch.Tensor  # flow-matching time in [0, 1]
    noise_BCTHW: torch.Tensor
    semantic_noise_BNS: torch.Tensor
    text: list[torch.Tensor | None]  # stored embeddings, None where missing
    prompts: list[str]
    rng_ids: list[str]


def _item(batch: dict[str, Any], key: str, i: int) -> Any:
    value = batch.get(key)
    return None if value is None else value[i]


def group_by_source(batch: dict[str, Any]) -> list[Group]:
    """Split a collated batch by source shape (groups ordered by first appearance)."""
    n = len(batch["rng_id"])
    buckets: dict[Any, list[int]] = {}
    for i in range(n):
        src = _item(batch, "source_latents", i)
        buckets.setdefault(None if src is None else tuple(src.shape), []).append(i)
    groups = []
    for shape, idx in buckets.items():
        target = torch.stack([_item(batch, "target_latents", i) for i in idx])
        source = None if shape is None else torch.stack([batch["source_latents"][i] for i in idx])
        anchors = torch.stack([_item(batch, "anchor_tokens", i).flatten(0, 1) for i in idx])
        groups.append(
            Group(
                indices=idx,
                target_BCTHW=target,
                source_BCTHW=source,
                anchors_BNS=anchors,
                t_B=torch.tensor([float(_item(batch, "t", i)) for i in idx]),
                noise_BCTHW=torch.stack([_item(batch, "noise", i) for i in idx]),
                semantic_noise_BNS=torch.stack([_item(batch, "semantic_noise", i) for i in idx]),
                text=[_item(batch, "text_embed", i) for i in idx],
                prompts=[batch["prompt"][i] for i in idx],
                rng_ids=[str(batch["rng_id"][i]) for i in idx],
            )
        )
    return groups
