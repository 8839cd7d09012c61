"""Typed config of ``sama train`` (CONVENTIONS.md rule 4): one loop, two stage files.

``load_train_config(path, overrides)`` = dataclass defaults <- YAML <- ``a.b=value`` overrides,
then every section's ``validate()``, then ``resolved()``: ``{models_dir}`` substituted in the
model ids (the same convention as the build config, so the ids the trainer expects are the
strings the build recorded in the shard provenance) and ``data.root`` expanded into sources.

Stage defaults (SAMA.md 4): stage 0 reads image-edit pairs + plain clips with pretext tasks;
stage 1 reads image and video pairs and starts from a stage-0 checkpoint (``init_from``).
Choices the paper leaves open and where they are recorded: ``sem_target`` (trainer/losses.py),
timestep sampling, shift and loss weighting (``flow``, trainer/losses.py), the ``none`` pretext
source (sama/pretext.py), ``init_weights`` and ``video_loss_share`` (below); the scale knobs
(micro-batch sizes, ``optim.global_*``, checkpointing, offload, ``context_parallel``) are
checked by the memory plan (trainer/plan.py) and listed in docs/decisions.md.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from sama.config import check, load_config
from sama.encoders.config import (
    WAN_DIFFUSERS_ID,
    SiglipConfig,
    TextEncoderConfig,
    VAEConfig,
)
from sama.errors import ConfigError
from sama.pretext import PretextConfig
from trainer.data import DataConfig, SourceConfig
from trainer.losses import FlowConfig
from trainer.plan import PlanConfig
from trainer.sampling import ValidationConfig

ROOT_KINDS = ("image_pairs", "video_pairs", "clips")
STAGE_ROOT_KINDS = {0: ["image_pairs", "clips"], 1: ["image_pairs", "video_pairs"]}


@dataclass
class TrainDataConfig(DataConfig):
    """The loader's config (``trainer.data.DataConfig``) plus the ``root`` shorthand.

    ``root``: a built dataset (``ROOT/clips``, ``ROOT/pairs``) or a published one
    (``ROOT/data/clips``, ``ROOT/data/pairs``; local, ``hf://``, ``s3://``); when set, ``sources`` is filled
    from ``root_kinds`` (default per stage, see ``STAGE_ROOT_KINDS``). Kinds with no shards under
    ``root`` are skipped (the demo dataset has clips only). Image and video pairs get their own
    judge thresholds (SAMA.md 4: images IF/VQ/CP >= 9; videos IF >= 8, VQ >= 9, CP/MC >= 8).
    A root with a ``dedup/v1`` table (``sama dedup ROOT``; published: ``data/dedup/``) has its
    marked near-duplicate clips left out while ``skip_duplicates`` is true (the default).
    """

    root: str = ""
    root_kinds: list[str] = field(default_factory=list)
    image_min_scores: dict[str, float] | None = None
    video_min_scores: dict[str, float] | None = None

    def validate(self) -> None:
        super().validate()
        check(
            not (self.root and self.sources),
            "set data.root (a built dataset) or data.sources (explicit list), not both",
        )
        bad = [k for k in self.root_kinds if k not in ROOT_KINDS]
        check(not bad, f"data.root_kinds has unknown kinds {bad}; use {list(ROOT_KINDS)}")

    def expanded(self, stage: int) -> TrainDataConfig:
        """A copy whose ``sources`` come from ``root`` (unchanged when ``root`` is empty)."""
        if not self.root:
            return self
        from sama.shards import list_shards

        kinds = self.root_kinds or STAGE_ROOT_KINDS[stage]
        have = {k: bool(list_shards(self.root, k)) for k in ("clips", "pairs")}
        sources = []
        for kind in kinds:
            if kind == "clips" and have["clips"]:
                sources.append(SourceConfig(uri=self.root, kind="clips"))
            elif kind != "clips" and have["pairs"]:
                media = "image" if kind == "image_pairs" else "video"
                scores = self.image_min_scores if media == "image" else self.video_min_scores
                sources.append(
                    SourceConfig(
                        uri=self.root,
                        kind="pairs",
                        media=media,
                        min_scores=dict(scores) if scores else None,
                    )
                )
        if not sources:
            raise ConfigError(
                f"data.root={self.root!r} holds no shards for {kinds} (looked for "
                "ROOT/<kind>/*.parquet of a build and ROOT/data/<kind>/ of a published repo); "
                "build or publish a dataset there first"
            )
        # root is cleared so the resolved config (written beside the run) reloads as is
        return dataclasses.replace(self, sources=sources, root="", root_kinds=[])


@dataclass
class DiTConfig:
    """The Wan2.1 DiT that SAMA fine-tunes, and the sizes of SAMA's new modules."""

    model_id: str = WAN_DIFFUSERS_ID  # hub id or local dir; may use "{models_dir}"
    subfolder: str | None = "transformer"
    revision: str | None = None
    siglip_dim: int = 0  # 0 = the SigLIP config's hidden_size (1152 for so400m)
    tokens_per_anchor: int = 65  # 8x8 pooled + 1 global (SAMA.md 2)
    mlp_hidden: int = 1024  # siglip_feat_mlp hidden width (released checkpoint)

    def validate(self) -> None:
        check(bool(self.model_id), "dit.model_id is empty; use a hub id or a local directory")
        check(
            self.siglip_dim >= 0,
            f"dit.siglip_dim must be >= 0 (0 = from SigLIP), got {self.siglip_dim}",
        )
        check(
            self.tokens_per_anchor >= 1,
            f"dit.tokens_per_anchor must be >= 1, got {self.tokens_per_anchor}",
        )
        check(self.mlp_hidden >= 1, f"dit.mlp_hidden must be >= 1, got {self.mlp_hidden}")


@dataclass
class OptimConfig:
    """AdamW (SAMA.md 4: LR 2e-5; code defaults: weight decay 0.01), warmup, clipping."""

    lr: float = 2e-5
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    warmup_steps: int = 100  # linear from lr/warmup_steps to lr (not in the paper)
    schedule: Literal["constant", "cosine"] = "constant"  # after warmup
    min_lr_ratio: float = 0.0  # cosine floor, as a fraction of lr
    grad_clip: float = 1.0  # max global grad norm; 0 = off
    # Samples per optimizer step over all ranks (SAMA.md 4: 448 images + 112 videos); reached
    # by gradient accumulation over micro-batches of data.image/video_batch_size. 0 = one
    # micro-batch per rank per step, mixed by data.video_batch_ratio (no accumulation).
    global_images: int = 0
    global_videos: int = 0

    def validate(self) -> None:
        check(self.lr > 0, f"optim.lr must be > 0 (paper: 2e-5), got {self.lr}")
        check(self.weight_decay >= 0, f"optim.weight_decay must be >= 0, got {self.weight_decay}")
        check(
            all(0 <= b < 1 for b in self.betas), f"optim.betas must be in [0, 1), got {self.betas}"
        )
        check(self.eps > 0, f"optim.eps must be > 0, got {self.eps}")
        check(self.warmup_steps >= 0, f"optim.warmup_steps must be >= 0, got {self.warmup_steps}")
        check(
            0 <= self.min_lr_ratio <= 1,
            f"optim.min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}",
        )
        check(self.grad_clip >= 0, f"optim.grad_clip must be >= 0 (0 = off), got {self.grad_clip}")
        check(
            self.global_images >= 0 and self.global_videos >= 0,
            "optim.global_images / global_videos must be >= 0 (0 = no accumulation)",
        )


def _pretext_default() -> PretextConfig:
    # Plain-string task keys: PretextConfig's default mix is keyed by the PretextTask enum,
    # which the resolved-config YAML dump cannot represent.
    cfg = PretextConfig()
    return dataclasses.replace(cfg, mix={str(k): float(v) for k, v in cfg.mix.items()})


@dataclass
class TrainConfig:
    """Everything one training run needs; stage 0 and stage 1 differ only in values."""

    stage: Literal[0, 1] = 0
    models_dir: str = ""  # substituted for "{models_dir}" in every model id
    dit: DiTConfig = field(default_factory=DiTConfig)
    # Online prompt encoding, for rows whose shards carry no text embeddings (and validation).
    text_encoder: TextEncoderConfig = field(default_factory=TextEncoderConfig)
    # Checked against the shard provenance (ids + config hashes; never loaded for that) and,
    # for the VAE, loaded to decode validation samples.
    vae: VAEConfig = field(default_factory=VAEConfig)
    siglip: SiglipConfig = field(default_factory=SiglipConfig)
    check_provenance: bool = True
    # Weights to start from (trainer/init_from.py): a previous run or checkpoint dir (stage 1:
    # the stage-0 run), a diffusers dir (WanTransformer3DModel, or a `sama export` dir), or a
    # released SAMA/Wan checkpoint in DiffSynth names (.safetensors file, index or folder),
    # loaded over dit.model_id non-strictly; the run log lists loaded/kept/ignored keys.
    init_from: str = ""
    init_format: Literal["auto", "run", "diffusers", "diffsynth"] = "auto"
    # Which weights of a run start the next (open): the EMA, the model the paper would ship.
    init_weights: Literal["ema", "model"] = "ema"
    output_dir: str = "out/train"
    resume: Literal["auto", "never"] = "auto"  # auto: continue from OUTPUT/checkpoints/latest
    data: TrainDataConfig = field(default_factory=TrainDataConfig)
    pretext: PretextConfig = field(default_factory=_pretext_default)
    flow: FlowConfig = field(default_factory=FlowConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    ema_decay: float = 0.9998  # every step (SAMA.md 4)
    sem_loss_weight: float = 0.1  # L = L_FM + 0.1 L_sem (SAMA.md 2)
    sem_target: Literal["velocity", "clean"] = "velocity"  # open; see trainer/losses.py
    precision: Literal["fp32", "bf16"] = "bf16"  # bf16: autocast (fp32 master weights)
    gradient_checkpointing: bool = False  # per DiT block; only block inputs stay saved
    activation_offload: bool = False  # checkpointed block inputs kept in pinned host memory
    # Ranks that split one sample's tokens (Ulysses all-to-all around self-attention,
    # trainer/context_parallel.py); divides the world size and the DiT's head count.
    context_parallel: int = 1
    # Share of each optimizer step's loss from video samples (images: the rest); within a kind
    # every sample weighs the same. 0.5 = the paper's 28 image + 28 video batches, each batch
    # mean weighted equally (SAMA.md 4). A step holding one kind gives it the whole weight.
    video_loss_share: float = 0.5
    async_checkpoint: bool = False  # write checkpoints in the background (staged on the host)
    text_pad_tokens: int = 512  # prompt embeddings zero-padded to this length, as WanPipeline
    steps: int = 1000
    log_every: int = 10
    ckpt_every: int = 500  # 0 = only at the end
    keep_checkpoints: int = 3  # 0 = keep all
    seed: int = 0  # noise, timesteps, pretext corruptions, new-module init (data.seed: order)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    distributed: Literal["auto", "none", "ddp", "fsdp"] = "auto"  # auto: ddp under torchrun
    log_sample_ids: bool = False  # write every step's sample ids per rank (tests, debugging)
    validation: ValidationConfig = field(default_factory=ValidationConfig)
    plan: PlanConfig = field(default_factory=PlanConfig)

    def validate(self) -> None:
        check(self.stage in (0, 1), f"stage must be 0 or 1, got {self.stage}")
        check(bool(self.output_dir), "output_dir is empty; set output_dir=DIR")
        check(
            self.context_parallel >= 1,
            f"context_parallel must be >= 1 (1 = off), got {self.context_parallel}",
        )
        check(
            not self.activation_offload or self.gradient_checkpointing,
            "activation_offload keeps the checkpointed block inputs on the host; it needs "
            "gradient_checkpointing=true",
        )
        check(
            0.0 <= self.video_loss_share <= 1.0,
            f"video_loss_share must be in [0, 1] (paper: 0.5), got {self.video_loss_share}",
        )
        check(
            0 <= self.ema_decay < 1,
            f"ema_decay must be in [0, 1) (paper: 0.9998), got {self.ema_decay}",
        )
        check(
            self.sem_loss_weight >= 0,
            f"sem_loss_weight must be >= 0 (paper: 0.1), got {self.sem_loss_weight}",
        )
        check(
            self.text_pad_tokens >= 1,
            f"text_pad_tokens must be >= 1 (Wan: 512), got {self.text_pad_tokens}",
        )
        check(self.steps >= 1, f"steps must be >= 1, got {self.steps}")
        check(self.log_every >= 1, f"log_every must be >= 1, got {self.log_every}")
        check(
            self.ckpt_every >= 0,
            f"ckpt_every must be >= 0 (0 = only at the end), got {self.ckpt_every}",
        )
        check(
            self.keep_checkpoints >= 0,
            f"keep_checkpoints must be >= 0, got {self.keep_checkpoints}",
        )
        for where, model_id in self._model_ids():
            check(
                "{models_dir}" not in model_id or bool(self.models_dir),
                f"{where}.model_id={model_id!r} uses {{models_dir}} but models_dir is not set; "
                "pass models_dir=DIR (e.g. the output of `sama models make-tiny DIR`)",
            )

    def _model_ids(self) -> list[tuple[str, str]]:
        return [
            ("dit", self.dit.model_id),
            ("text_encoder", self.text_encoder.model_id),
            ("vae", self.vae.model_id),
            ("siglip", self.siglip.model_id),
        ]

    def check_has_data(self) -> None:
        check(
            bool(self.data.root or self.data.sources),
            "no training data: set data.root=DATASET (a `sama build` output directory or URI) "
            "or list data.sources",
        )

    def resolved(self, expand_data: bool = True) -> TrainConfig:
        """``{models_dir}`` substituted in the model ids, ``data.root`` expanded into sources
        (left as is with ``expand_data=False``: ``--plan`` and ``--print-config``)."""
        models_dir = str(Path(self.models_dir).expanduser()) if self.models_dir else ""

        def sub(section):
            return dataclasses.replace(
                section, model_id=section.model_id.replace("{models_dir}", models_dir)
            )

        return dataclasses.replace(
            self,
            dit=sub(self.dit),
            text_encoder=sub(self.text_encoder),
            vae=sub(self.vae),
            siglip=sub(self.siglip),
            data=self.data.expanded(self.stage) if expand_data else self.data,
        )


def load_train_config(
    path: str | Path | None = None, overrides: list[str] | None = None, require_data: bool = True
) -> TrainConfig:
    """Defaults <- YAML at ``path`` <- ``a.b=value`` overrides; validated and resolved. Without
    ``require_data`` (``--plan``, ``--print-config``) no data is needed and none is listed."""
    cfg = load_config(TrainConfig, path, overrides)
    if not require_data:
        return cfg.resolved(expand_data=False)
    cfg.check_has_data()
    return cfg.resolved()
