"""The memory plan: ``sama train CONFIG --plan`` at the paper's settings and the start-up check."""

from __future__ import annotations

import types

import pytest
import torch

from sama.cli import main as sama_main
from sama.errors import ConfigError
from tests.trainer.conftest import CONFIG_DIR, debug_overrides
from trainer.config import load_train_config
from trainer.data import StreamingLoader
from trainer.distributed import Dist
from trainer.memory import dit_dims, latent_tokens
from trainer.plan import make_plan
from trainer.train import check_memory

STAGE0 = str(CONFIG_DIR / "stage0.yaml")


def test_stage0_plan_refuses_four_videos_per_gpu_naming_the_knobs(capsys):
    assert sama_main(["train", STAGE0, "--plan", "data.video_batch_size=4"]) == 1
    out, err = capsys.readouterr()
    assert "4 x 65,585 tokens" in out and "DOES NOT FIT" in out
    assert "does not fit" in err and "> 80 GiB" in err
    for knob in ("data.video_batch_size=1 ->", "activation_offload=true ->", "context_parallel=4"):
        assert knob in err, knob


def test_stage0_plan_accepts_the_shipped_default(capsys):
    assert sama_main(["train", STAGE0, "--plan"]) == 0
    out, err = capsys.readouterr()
    assert "1 x 65,585 tokens (32,760 target)" in out  # SAMA.md 1: 32,760 + 32,760 + 65
    assert "56 rank(s), fsdp, bf16" in out and "-> fits" in out and not err
    assert "448 images + 112 videos per step = 168 micro-batches = 56" in out
    # the same model on 8 GPUs needs a knob: the plan says which
    assert sama_main(["train", STAGE0, "--plan", "plan.world_size=8"]) == 1
    assert "activation_offload=true -> " in capsys.readouterr().err


def test_paper_model_and_token_counts():
    cfg = load_train_config(STAGE0, require_data=False)
    plan = make_plan(cfg)
    assert plan.dims.num_layers == 40 and plan.dims.dim == 5120 and plan.dims.heads == 40
    assert 14.0e9 < plan.dims.total_params < 14.4e9
    assert latent_tokens(81, 480, 832, (1, 2, 2)) == 32_760


def test_a_start_on_a_too_small_gpu_stops_before_loading(
    tmp_path, tiny_models, train_root, monkeypatch
):
    """The start-up check is the --plan estimate for the data's largest buckets, against the
    device's own memory (here a pretend 1 GiB GPU)."""
    cfg = load_train_config(
        CONFIG_DIR / "debug_cpu.yaml",
        debug_overrides(tiny_models, train_root, tmp_path, "data.video_batch_size=2"),
    )
    loader = StreamingLoader(cfg.data)
    plan = make_plan(cfg, 1, None, loader.keys)
    kinds = {s.kind: s for s in plan.setup.samples}
    # tiny shards: 3 latent frames of 4x6 -> 3 x 2 x 3 = 18 tokens (+ as many source) + 65
    assert kinds["video"].tokens == 18 + 18 + 65 and kinds["video"].batch == 2
    assert kinds["image"].tokens == 6 + 6 + 65
    dims = dit_dims(
        {
            "num_layers": 2,
            "num_attention_heads": 2,
            "attention_head_dim": 12,
            "ffn_dim": 48,
            "text_dim": 32,
            "freq_dim": 32,
        },
        32,
        16,
    )
    assert plan.dims == dims
    gpu = Dist(device=torch.device("cuda", 0))
    props = types.SimpleNamespace(total_memory=1024**3)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda device: props)
    with pytest.raises(ConfigError, match="does not fit: .* > 1 GiB.*Knobs"):
        check_memory(cfg, gpu, loader)
    check_memory(
        load_train_config(
            CONFIG_DIR / "debug_cpu.yaml",
            debug_overrides(tiny_models, train_root, tmp_path, "plan.enforce=false"),
        ),
        gpu,
        loader,
    )
