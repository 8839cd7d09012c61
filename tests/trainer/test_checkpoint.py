"""Checkpoints: kill and resume reproduces the uninterrupted run exactly (CPU, tiny model).

The reference run trains 8 steps. The interrupted run checkpoints at step 4 and crashes during
step 6 (an exception raised from inside the loop, after the work of step 5 is done and lost);
a new ``train`` call (new model, optimizer, EMA, loader objects) resumes from
``checkpoints/latest`` and must log the same loss values for steps 5..8 and see the same
batches, bit for bit.
"""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from tests.trainer.conftest import CONFIG_DIR, debug_overrides
from trainer import checkpoint as ckpt_io
from trainer import train as train_mod
from trainer.config import load_train_config

STEPS = 8


def run_cfg(tiny_models, root, out, *extra):
    return load_train_config(
        CONFIG_DIR / "debug_cpu.yaml",
        debug_overrides(
            tiny_models,
            root,
            out,
            f"steps={STEPS}",
            "log_every=1",
            "ckpt_every=4",
            "keep_checkpoints=0",
            "log_sample_ids=true",
            "ema_decay=0.9",
            *extra,
        ),
    )


def samples(out):
    lines = (out / "samples_rank0.jsonl").read_text().splitlines()
    return {r["step"]: r["ids"] for r in map(json.loads, lines)}


def test_kill_and_resume_gives_the_same_losses(tmp_path, tiny_models, train_root, monkeypatch):
    ref_out, out = tmp_path / "ref", tmp_path / "killed"
    ref = train_mod.train(run_cfg(tiny_models, train_root, ref_out))["history"]

    real_step = train_mod.optimizer_step
    calls = {"n": 0}

    def crash_on_step_6(run, lr):
        calls["n"] += 1
        if calls["n"] == 6:
            raise KeyboardInterrupt("simulated kill during step 6")
        return real_step(run, lr)

    monkeypatch.setattr(train_mod, "optimizer_step", crash_on_step_6)
    with pytest.raises(KeyboardInterrupt):
        train_mod.train(run_cfg(tiny_models, train_root, out))
    monkeypatch.setattr(train_mod, "optimizer_step", real_step)
    assert ckpt_io.latest_checkpoint(out).name == "step_00000004"

    # loader threads may change on resume: which worker builds a batch never changes it
    resumed = train_mod.train(run_cfg(tiny_models, train_root, out, "data.num_workers=2"))
    resumed = resumed["history"]
    assert [r["step"] for r in resumed] == [5, 6, 7, 8]
    for key in ("loss", "fm", "sem", "grad_norm"):
        assert [r[key] for r in resumed] == [r[key] for r in ref[4:]], key
    ref_ids, ids = samples(ref_out), samples(out)
    assert all(ids[s] == ref_ids[s] for s in range(4, STEPS))  # same batches after resume
    final_ref = ckpt_io.latest_checkpoint(ref_out)
    final = ckpt_io.latest_checkpoint(out)
    for name in ("model", "ema"):
        a, b = ckpt_io.load_weights(final_ref, name), ckpt_io.load_weights(final, name)
        assert all(torch.equal(a[k], b[k]) for k in a), name


def test_checkpoint_files_are_safe_to_load(tmp_path, tiny_models, train_root):
    out = tmp_path / "run"
    train_mod.train(run_cfg(tiny_models, train_root, out, "steps=4"))
    ck = ckpt_io.latest_checkpoint(out)
    state = ckpt_io.read_state(ck)
    assert state["step"] == 4 and state["world_size"] == 1 and state["ema_updates"] == 4
    opt = torch.load(ck / "optimizer.pt", weights_only=True)  # no arbitrary unpickling
    assert opt["param_groups"][0]["lr"] > 0
    rng = torch.load(ck / "rng_rank0.pt", weights_only=True)
    assert set(rng) >= {"torch", "python"}
    model = load_file(str(ck / "model.safetensors"))
    assert "semantic_head.proj.weight" in model and "segment_embedding.weight" in model
    assert json.loads((ck / "loader_rank0.json").read_text())["batches_emitted"] >= 1


def test_latest_survives_an_interrupted_save(tmp_path, tiny_models, train_root):
    """A crash mid-save leaves a ``.tmp-`` directory; ``latest`` still names the last good one,
    the next save replaces the leftover, and old checkpoints are pruned to ``keep_checkpoints``."""
    out = tmp_path / "run"
    train_mod.train(
        run_cfg(tiny_models, train_root, out, "steps=4", "ckpt_every=2", "keep_checkpoints=2")
    )
    root = out / "checkpoints"
    (root / ".tmp-step_00000006").mkdir()
    (root / ".tmp-step_00000006" / "model.safetensors").write_bytes(b"partial")
    assert ckpt_io.latest_checkpoint(out).name == "step_00000004"
    train_mod.train(
        run_cfg(tiny_models, train_root, out, "steps=6", "ckpt_every=2", "keep_checkpoints=2")
    )
    assert sorted(p.name for p in root.iterdir()) == ["latest", "step_00000004", "step_00000006"]
    assert ckpt_io.latest_checkpoint(out).name == "step_00000006"
