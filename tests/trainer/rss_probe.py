"""Run by test_weights.py, under ``torchrun`` (FSDP) or alone (not a test itself): build the
DiT in ``MODELS_DIR/big`` the way training does (``trainer.bundle.build_model``) and write this
rank's resident memory before and its peak during the load to ``OUT/rss_rank{r}.json``."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path


def rss_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def main(models: str, out: str, mode: str) -> None:
    import torch
    from diffusers.models.transformers.transformer_wan import WanTransformer3DModel  # noqa: F401

    torch.set_num_threads(1)  # (imports first: their memory is not the model's)
    from sama.config import load_config
    from trainer.bundle import build_model
    from trainer.config import TrainConfig
    from trainer.distributed import init_distributed, shutdown

    cfg = load_config(
        TrainConfig,
        overrides=[
            f"dit.model_id={models}/big",
            "dit.siglip_dim=32",
            "dit.mlp_hidden=16",
            "device=cpu",
            "precision=fp32",
        ],
    )
    d = init_distributed(mode, "cpu")
    Path("/proc/self/clear_refs").write_text("5")  # reset the peak (VmHWM) to the current RSS
    before = rss_kib("VmRSS")
    core, _, _ = build_model(cfg, 32, d, fill=True)
    peak = rss_kib("VmHWM")
    params = sum(
        p.to_local().numel() if hasattr(p, "to_local") else p.numel() for p in core.parameters()
    )
    record = {
        "before_kib": before,
        "peak_kib": peak,
        "local_params": params,
        "world_size": d.world_size,
    }
    Path(out, f"rss_rank{d.rank}_{mode}.json").write_text(json.dumps(record))
    shutdown(d)


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    main(*sys.argv[1:4])
