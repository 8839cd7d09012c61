"""Checkpoints: kill and resume reproduces the uninterrupted run exactly (CPU, tiny model);
``latest`` is written last and never silently lost; async saves; safe metadata.

The reference run trains 8 steps. The interrupted run checkpoints at step 4 and crashes during
step 6 (an exception raised from inside the loop, after the work of step 5 is done and lost);
a new ``train`` call (new model, optimizer, EMA, loader objects) resumes from
``checkpoints/latest`` and must log the same loss values for steps 5..8 and see the same
batches, bit for bit.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil

import pytest
import torch

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
    for name in ("model", "ema", "optim"):
        a, b = ckpt_io.load_full(final_ref, name), ckpt_io.load_full(final, name)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name


def test_checkpoint_files_are_safe_to_load(tmp_path, tiny_models, train_root):
    """Tensors only in DCP; JSON for the rest; the metadata pickle through an allow-list."""
    out = tmp_path / "run"
    train_mod.train(run_cfg(tiny_models, train_root, out, "steps=4"))
    ck = ckpt_io.latest_checkpoint(out)
    state = ckpt_io.read_state(ck)
    assert state["step"] == 4 and state["world_size"] == 1 and state["ema_updates"] == 4
    assert {p.name for p in ck.iterdir()} == {
        ".metadata",
        "__0_0.distcp",
        "rank0.json",
        "state.json",
        "config.yaml",
        "model_config.json",
    }
    rank = json.loads((ck / "rank0.json").read_text())
    assert rank["loader"]["batches_emitted"] >= 1 and set(rank["rng"]) >= {"torch", "python"}
    stored = ckpt_io.stored_tensors(ck)
    assert "model.semantic_head.proj.weight" in stored and "ema.segment_embedding.weight" in stored
    assert "optim.semantic_head.proj.weight.exp_avg_sq" in stored

    # a metadata file naming any other class is refused before anything is built from it
    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    (ck / ".metadata").write_bytes(pickle.dumps(Evil()))
    with pytest.raises(pickle.UnpicklingError, match="posix.system|os.system"):
        ckpt_io.stored_tensors(ck)


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


def test_a_latest_pointing_nowhere_is_an_error_naming_the_newest(tmp_path, tiny_models, train_root):
    out = tmp_path / "run"
    cfg = run_cfg(tiny_models, train_root, out, "steps=4", "ckpt_every=2")
    train_mod.train(cfg)
    root = out / "checkpoints"
    (root / "latest").write_text("step_00000099\n")
    with pytest.raises(ckpt_io.CheckpointError, match="step_00000099.*step_00000004"):
        train_mod.train(cfg)
    (root / "latest").write_text("step_00000004\n")
    (root / "step_00000004" / "state.json").unlink()  # partial: never picked
    with pytest.raises(
        ckpt_io.CheckpointError, match="incomplete.*newest complete .*step_00000002"
    ):
        train_mod.train(cfg)
    (root / "latest").unlink()  # checkpoints but no latest: not a silent fresh start either
    with pytest.raises(ckpt_io.CheckpointError, match="no latest"):
        train_mod.train(cfg)
    train_mod.train(run_cfg(tiny_models, train_root, out, "steps=2", "resume=never"))


def test_resaving_a_step_keeps_the_old_one_until_the_new_is_in_place(
    tmp_path, tiny_models, train_root, monkeypatch
):
    out = tmp_path / "run"
    train_mod.train(run_cfg(tiny_models, train_root, out, "steps=2"))
    root = out / "checkpoints"
    before = ckpt_io.load_full(root / "step_00000002", "model")
    real_rename = os.rename

    def fail_on_put_in_place(src, dst):
        if str(src).endswith(".tmp-step_00000002"):
            raise OSError("simulated crash while putting the new checkpoint in place")
        return real_rename(src, dst)

    monkeypatch.setattr(os, "rename", fail_on_put_in_place)
    with pytest.raises(OSError, match="simulated crash"):
        train_mod.train(run_cfg(tiny_models, train_root, out, "steps=2", "resume=never", "seed=1"))
    monkeypatch.setattr(os, "rename", real_rename)
    aside = root / ".old-step_00000002"  # moved aside, not deleted
    kept = ckpt_io.load_full(aside, "model")
    assert all(torch.equal(kept[k], before[k]) for k in before)
    with pytest.raises(ckpt_io.CheckpointError, match="moved aside.*rename it to step_00000002"):
        ckpt_io.latest_checkpoint(out)
    train_mod.train(run_cfg(tiny_models, train_root, out, "steps=2", "resume=never", "seed=1"))
    assert sorted(p.name for p in root.iterdir()) == ["latest", "step_00000002"]
    after = ckpt_io.load_full(root / "step_00000002", "model")
    assert any(not torch.equal(after[k], before[k]) for k in before)  # seed=1: the new one


def test_async_checkpoints_equal_sync_ones(tmp_path, tiny_models, train_root):
    """Staged to host memory before training goes on: the step-2 checkpoint written in the
    background holds the step-2 state, not a later one."""
    sync, bg = tmp_path / "sync", tmp_path / "async"
    train_mod.train(run_cfg(tiny_models, train_root, sync, "steps=4", "ckpt_every=2"))
    train_mod.train(
        run_cfg(tiny_models, train_root, bg, "steps=4", "ckpt_every=2", "async_checkpoint=true")
    )
    for step in ("step_00000002", "step_00000004"):
        for part in ("model", "ema", "optim"):
            a = ckpt_io.load_full(sync / "checkpoints" / step, part)
            b = ckpt_io.load_full(bg / "checkpoints" / step, part)
            assert all(torch.equal(a[k], b[k]) for k in a), (step, part)
    assert ckpt_io.latest_checkpoint(bg).name == "step_00000004"
    shutil.rmtree(bg / "checkpoints" / "step_00000004")
    (bg / "checkpoints" / "latest").write_text("step_00000002\n")
    resumed = train_mod.train(
        run_cfg(tiny_models, train_root, bg, "steps=4", "async_checkpoint=true")
    )
    assert [r["step"] for r in resumed["history"]] == [3, 4]
