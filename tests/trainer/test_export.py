"""``sama export``: DiffSynth names (the released checkpoint's, SAMA.md 7) and a diffusers
folder, each read back to the exact tensors of the checkpoint."""

from __future__ import annotations

import json

import pytest
import torch
from diffusers import WanTransformer3DModel
from safetensors import safe_open

from sama.cli import main as sama_main
from tests.trainer.conftest import CONFIG_DIR, debug_overrides
from tests.trainer.trainer_fixtures import released_names
from trainer import checkpoint as ckpt_io
from trainer.config import load_train_config
from trainer.convert import load_released_checkpoint, safetensors_files
from trainer.export import export_checkpoint
from trainer.model import SamaTransformer
from trainer.sama_modules import SamaConfig
from trainer.train import train


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, tiny_models, train_root):
    out = tmp_path_factory.mktemp("export_run")
    cfg = load_train_config(
        CONFIG_DIR / "debug_cpu.yaml",
        debug_overrides(tiny_models, train_root, out, "steps=3", "ema_decay=0.5"),
    )
    train(cfg)
    return out


def fresh(tiny_models) -> SamaTransformer:
    return SamaTransformer.from_pretrained_dit(
        f"{tiny_models}/wan", config=SamaConfig(siglip_dim=32, mlp_hidden=16), init_seed=9
    )


def stored_names(folder) -> set[str]:
    names = set()
    for f in safetensors_files(folder):
        with safe_open(str(f), framework="pt") as h:
            names |= set(h.keys())
    return names


@pytest.mark.parametrize(("weights", "part"), [("ema", "ema"), ("raw", "model")])
def test_diffsynth_export_round_trips_under_the_released_names(
    tmp_path, run_dir, tiny_models, weights, part
):
    out = tmp_path / "diffsynth"
    rc = sama_main(
        ["export", str(run_dir), str(out), "--format", "diffsynth", "--weights", weights]
    )
    assert rc == 0
    assert stored_names(out) == released_names(2)  # every name of SAMA.md 7, nothing else
    model = fresh(tiny_models)
    load_released_checkpoint(model, out)  # strict: unknown / missing names raise
    want = ckpt_io.load_full(ckpt_io.latest_checkpoint(run_dir), part)
    got = model.state_dict()
    assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in want)
    info = json.loads((out / "export.json").read_text())
    assert info["weights"] == weights and info["step"] == 3


def test_ema_and_raw_exports_differ(tmp_path, run_dir):
    export_checkpoint(run_dir, tmp_path / "ema", "diffsynth", "ema")
    export_checkpoint(run_dir, tmp_path / "raw", "diffsynth", "raw")
    ema = ckpt_io.load_full(ckpt_io.latest_checkpoint(run_dir), "ema")
    raw = ckpt_io.load_full(ckpt_io.latest_checkpoint(run_dir), "model")
    assert any(not torch.equal(ema[k], raw[k]) for k in ema)


def test_diffusers_export_round_trips(tmp_path, run_dir):
    out = tmp_path / "diffusers"
    export_checkpoint(run_dir, out, "diffusers", "ema")
    model = SamaTransformer.load(out)  # transformer/ + sama_modules.safetensors + config
    want = ckpt_io.load_full(ckpt_io.latest_checkpoint(run_dir), "ema")
    got = model.state_dict()
    assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in want)
    dit = WanTransformer3DModel.from_pretrained(out / "transformer", use_safetensors=True)
    assert torch.equal(dit.proj_out.weight, want["dit.proj_out.weight"])


def test_sharded_bf16_export_has_an_index(tmp_path, run_dir, tiny_models):
    out = tmp_path / "sharded"
    export_checkpoint(run_dir, out, "diffsynth", "ema", "bfloat16", max_shard_gb=1e-5)
    index = json.loads((out / "model.safetensors.index.json").read_text())
    assert len(set(index["weight_map"].values())) > 1
    assert set(index["weight_map"]) == released_names(2)
    model = fresh(tiny_models)
    load_released_checkpoint(model, out)
    want = ckpt_io.load_full(ckpt_io.latest_checkpoint(run_dir), "ema")
    got = model.state_dict()
    assert all(torch.equal(got[k], want[k].to(torch.bfloat16).float()) for k in want)
