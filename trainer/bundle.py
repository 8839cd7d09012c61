"""The model bundle a run trains: the Wan DiT + SAMA's modules, and what its shards must match.

``build_model`` never holds a full copy of the DiT on any rank: meta-device build, FSDP
sharding, then each rank reads its rows (trainer/weights.py) from ``init_from`` and the
``dit.model_id`` base.

``expected_provenance`` is computed from the model *configs* only (no weights are loaded just
to compare): the VAE and SigLIP config hashes come out identical to the ones the encoders
record from their loaded models (same ``hash_model_config`` over the same config dict), and
the shards are refused when they differ (CONVENTIONS.md rule 3).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from sama.errors import ConfigError
from trainer import checkpoint as ckpt_io
from trainer.config import TrainConfig
from trainer.distributed import Dist
from trainer.init_from import InitReport
from trainer.model import SamaTransformer
from trainer.sama_modules import NEW_MODULES, SamaConfig


def siglip_width(cfg: TrainConfig) -> int:
    """``dit.siglip_dim``, or the SigLIP vision config's hidden size (config only, no weights)."""
    if cfg.dit.siglip_dim:
        return cfg.dit.siglip_dim
    return int(_siglip_config(cfg).hidden_size)


def _siglip_config(cfg: TrainConfig):
    from transformers import SiglipVisionConfig

    from sama.encoders._hf import load_or_explain

    s = cfg.siglip
    kw = {"revision": s.revision, **({"subfolder": s.subfolder} if s.subfolder else {})}
    return load_or_explain(
        lambda: SiglipVisionConfig.from_pretrained(s.model_id, **kw),
        "siglip config",
        s.model_id,
        s.subfolder,
        s.revision,
    )


def expected_provenance(cfg: TrainConfig) -> dict[str, Any]:
    """What the shards must have been built with: the trainer's VAE and SigLIP (ids and config
    hashes, from the configs alone, hashed exactly as the encoders hash their loaded models),
    the Wan latent normalisation, and the tokens per anchor the DiT expects (CONVENTIONS.md 3)."""
    from diffusers import AutoencoderKLWan

    from sama.encoders._hf import load_or_explain
    from sama.encoders.config import hash_model_config

    v = cfg.vae
    vae_config = load_or_explain(
        lambda: AutoencoderKLWan.load_config(
            v.model_id, subfolder=v.subfolder, revision=v.revision
        ),
        "vae config",
        v.model_id,
        v.subfolder,
        v.revision,
    )
    return {
        "vae": {"id": v.model_id, "config_hash": hash_model_config(dict(vae_config))},
        "siglip": {
            "id": cfg.siglip.model_id,
            "config_hash": hash_model_config(_siglip_config(cfg).to_dict()),
        },
        "latent_norm": {"kind": "wan_vae_mean_std"},
        "anchor_policy": {"tokens_per_anchor": cfg.dit.tokens_per_anchor},
    }


def build_model(
    cfg: TrainConfig, siglip_dim: int, d: Dist, fill: bool
) -> tuple[SamaTransformer, torch.nn.Module, InitReport | None]:
    """The Wan DiT + SAMA's modules, built on the meta device, sharded (FSDP) and then
    materialised on ``d.device``; with ``fill`` its weights are read into each rank's shard
    (a resume skips that: the checkpoint fills everything). Returns the model, its DDP
    wrapper (the model itself otherwise) and the ``init_from`` report."""
    from trainer.context_parallel import ContextParallel
    from trainer.distributed import shard_model, wrap_ddp
    from trainer.weights import load_dit_config, materialize, meta_model

    sama_cfg = SamaConfig(
        siglip_dim=siglip_dim,
        tokens_per_anchor=cfg.dit.tokens_per_anchor,
        mlp_hidden=cfg.dit.mlp_hidden,
    )
    core = meta_model(load_dit_config(cfg), sama_cfg, cfg.seed)
    if d.mode == "fsdp":
        shard_model(core, cfg.precision == "bf16")
    materialize(core, d.device)
    report = load_initial_weights(cfg, core, d) if fill else None
    if cfg.gradient_checkpointing:
        core.enable_gradient_checkpointing()
        core.activation_offload = cfg.activation_offload
    if d.cp > 1:
        core.enable_context_parallel(ContextParallel(d.cp_group, d.cp, d.cp_rank))
    return core, (wrap_ddp(core, d) if d.mode == "ddp" else core), report


def load_initial_weights(cfg: TrainConfig, core: SamaTransformer, d: Dist) -> InitReport | None:
    """``init_from`` (trainer/init_from.py) over the ``dit.model_id`` base, new modules fresh."""
    from trainer.init_from import InitReport, detect_format, file_sources
    from trainer.sama_modules import new_modules_init
    from trainer.weights import (
        WeightsError,
        dit_sources,
        dit_weights_dir,
        fill_parameters,
        memory_source,
    )

    names = [n for n, _ in core.named_parameters()]
    sources, report = {}, None
    if cfg.init_from:
        fmt = detect_format(cfg.init_from) if cfg.init_format == "auto" else cfg.init_format
        if fmt == "run":
            found = init_from_run(cfg, core, d)
            return InitReport(f"{found} ({cfg.init_weights} weights)", "run", loaded=names)
        sources, report = file_sources(cfg.init_from, fmt, names, len(core.dit.blocks))
    need = [n for n in names if n not in sources]
    new = [n for n in need if n.split(".", 1)[0] in NEW_MODULES]
    if len(new) < len(need):
        base = dit_sources(dit_weights_dir(cfg, d.local_rank == 0, d.barrier))
        missing = [n for n in need if n not in new and n not in base]
        if missing:
            raise ConfigError(f"dit.model_id={cfg.dit.model_id!r} lacks {missing[:5]}")
        sources.update({n: base[n] for n in need if n not in new})
    fresh = new_modules_init(core.config, core.dim, cfg.seed)
    sources.update({n: memory_source(fresh[n], "fresh init") for n in new})
    try:
        fill_parameters(core, sources)
    except WeightsError as e:
        where = (
            f"init_from={cfg.init_from!r}"
            if cfg.init_from
            else f"dit.model_id={cfg.dit.model_id!r}"
        )
        raise ConfigError(f"{where} does not fit this model: {e}; check dit.* sizes") from None
    return report


def init_from_run(cfg: TrainConfig, core: SamaTransformer, d: Dist) -> Path:
    """Load the ``init_weights`` of the checkpoint ``init_from`` points at (a run dir works),
    each rank reading only its shard."""
    found = ckpt_io.latest_checkpoint(cfg.init_from)
    if found is None:
        raise ConfigError(
            f"init_from={cfg.init_from!r} holds no checkpoint (looked for "
            "checkpoints/latest and state.json); train stage 0 first"
        )
    prefix = "ema" if cfg.init_weights == "ema" else "model"
    state = {f"{prefix}.{n}": p for n, p in core.named_parameters()}
    stored = ckpt_io.stored_tensors(found)
    missing = [k for k in state if k not in stored]
    if missing:
        raise ConfigError(
            f"init_from checkpoint {found} does not fit this model: missing {missing[:5]}; "
            "check dit.* sizes"
        )
    wrong = [k for k in state if tuple(stored[k][0]) != tuple(state[k].shape)]
    if wrong:
        raise ConfigError(f"init_from checkpoint {found}: shapes differ for {wrong[:5]}")
    ckpt_io.load_tensors(found, state, distributed=d.mode != "none")
    return found
