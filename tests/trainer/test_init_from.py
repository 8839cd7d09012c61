"""``init_from``: released (DiffSynth-named) weights with non-strict semantics made explicit,
diffusers folders, previous runs; what was loaded, kept and ignored is in the run log."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

from sama.errors import ConfigError
from tests.trainer.conftest import CONFIG_DIR, debug_overrides
from trainer.config import load_train_config
from trainer.convert import diffsynth_names
from trainer.distributed import init_distributed
from trainer.init_from import detect_format
from trainer.model import SamaTransformer
from trainer.sama_modules import SamaConfig, new_modules_init
from trainer.train import build, train

UNKNOWN = "blocks.0.self_attn.k_img.weight"  # an I2V-only tensor: not in this model
DROPPED = "semantic_head.proj.bias"


def cfg_for(tiny_models, root, out, *extra):
    return load_train_config(
        CONFIG_DIR / "debug_cpu.yaml", debug_overrides(tiny_models, root, out, *extra)
    )


def released_checkpoint(tiny_models, path, drop=(DROPPED,), extra=True, seed=7) -> dict:
    """A tiny checkpoint under the released names, every value distinct from the base."""
    model = SamaTransformer.from_pretrained_dit(
        f"{tiny_models}/wan", config=SamaConfig(siglip_dim=32, mlp_hidden=16)
    )
    names = diffsynth_names(len(model.dit.blocks))
    g = torch.Generator().manual_seed(seed)
    state = {
        names[k]: 0.1 * torch.randn(v.shape, generator=g) for k, v in model.state_dict().items()
    }
    for k in drop:
        state.pop(k)
    if extra:
        state[UNKNOWN] = torch.zeros(4, 4)
    save_file(state, str(path))
    return {ours: state[rel] for ours, rel in names.items() if rel in state}


def test_released_names_with_an_unknown_key_train_through_init_from(
    tmp_path, tiny_models, train_root, capsys
):
    ckpt = tmp_path / "sama-tiny.safetensors"
    values = released_checkpoint(tiny_models, ckpt)
    assert detect_format(ckpt) == "diffsynth"
    out = tmp_path / "run"
    cfg = cfg_for(tiny_models, train_root, out, f"init_from={ckpt}", "steps=2", "log_every=1")
    run = build(cfg, init_distributed("none", "cpu"))
    state = run.core.state_dict()
    assert all(torch.equal(state[k], v) for k, v in values.items())  # loaded
    fresh = new_modules_init(run.core.config, run.core.dim, cfg.seed)
    assert torch.equal(state[DROPPED], fresh[DROPPED])  # kept: the seeded fresh init
    report = json.loads((out / "init_from.json").read_text())
    assert report["format"] == "diffsynth"
    assert report["kept"] == [DROPPED] and report["ignored"] == [UNKNOWN]
    assert len(report["loaded"]) == len(state) - 1
    assert report["new_modules"] == {
        "segment_embedding": "loaded",
        "siglip_feat_mlp": "loaded",
        "semantic_head": "partly loaded",
    }
    log = capsys.readouterr().out
    assert "1 kept from the base, 1 ignored" in log and UNKNOWN in log and DROPPED in log
    result = train(cfg)
    assert [r["step"] for r in result["history"]] == [1, 2]
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in result["history"])


def test_a_plain_wan_release_keeps_the_new_modules_fresh(tmp_path, tiny_models, train_root):
    ckpt = tmp_path / "wan.safetensors"
    new = [
        k
        for k in diffsynth_names(2).values()
        if k.split(".")[0] in ("segment_embedding", "siglip_feat_mlp", "semantic_head")
    ]
    released_checkpoint(tiny_models, ckpt, drop=new, extra=False)
    out = tmp_path / "run"
    build(
        cfg_for(tiny_models, train_root, out, f"init_from={ckpt}"), init_distributed("none", "cpu")
    )
    report = json.loads((out / "init_from.json").read_text())
    assert set(report["new_modules"].values()) == {"fresh"}
    assert all(
        k.split(".")[0] in ("segment_embedding", "siglip_feat_mlp", "semantic_head")
        for k in report["kept"]
    )


def test_wrong_shapes_stop_the_run(tmp_path, tiny_models, train_root):
    ckpt = tmp_path / "bad.safetensors"
    released_checkpoint(tiny_models, ckpt)
    from safetensors.torch import load_file

    state = load_file(str(ckpt))
    state["head.head.weight"] = torch.zeros(3, 3)
    save_file(state, str(ckpt))
    cfg = cfg_for(tiny_models, train_root, tmp_path / "run", f"init_from={ckpt}")
    with pytest.raises(ConfigError, match="does not fit this model.*head.head.weight"):
        build(cfg, init_distributed("none", "cpu"))


def test_a_diffusers_folder_initialises_every_parameter(tmp_path, tiny_models, train_root):
    src = SamaTransformer.from_pretrained_dit(
        f"{tiny_models}/wan", config=SamaConfig(siglip_dim=32, mlp_hidden=16), init_seed=5
    )
    with torch.no_grad():
        for p in src.parameters():
            p.add_(1.0)
    src.save_pretrained(tmp_path / "sama_diffusers")
    assert detect_format(tmp_path / "sama_diffusers") == "diffusers"
    out = tmp_path / "run"
    cfg = cfg_for(tiny_models, train_root, out, f"init_from={tmp_path / 'sama_diffusers'}")
    run = build(cfg, init_distributed("none", "cpu"))
    want = src.state_dict()
    assert all(torch.equal(v, want[k]) for k, v in run.core.state_dict().items())
    report = json.loads((out / "init_from.json").read_text())
    assert report["kept"] == [] and report["ignored"] == []
    assert set(report["new_modules"].values()) == {"loaded"}
