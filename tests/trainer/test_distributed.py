"""``torchrun --nproc_per_node 2`` on CPU (gloo): DDP trains, ranks see disjoint samples,
a multi-rank run resumes exactly, FSDP2 matches DDP, and a killed FSDP run resumes from its
sharded (DCP) checkpoint on 2 ranks (the uninterrupted losses) and on 1 rank (resharded).

One DDP reference run of 6 steps; a second DDP run stops at 4 and is resumed to 6 by a new
``torchrun``; an FSDP reference of 6 steps; an FSDP run SIGKILLed during step 5. Every run logs
its sample ids per rank (``log_sample_ids``) and its losses (``train_log.jsonl``).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import torch
from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

from tests.trainer.conftest import CONFIG_DIR, debug_overrides
from tests.trainer.trainer_fixtures import REPO, TORCHRUN_2, torchrun_env
from trainer import checkpoint as ckpt_io
from trainer.config import load_train_config
from trainer.distributed import init_distributed
from trainer.train import build, train


def torchrun(tiny_models, root, out, *extra, entry=("-m", "trainer.train"), ok=True) -> str:
    cmd = [
        *TORCHRUN_2,
        *entry,
        str(CONFIG_DIR / "debug_cpu.yaml"),
        *debug_overrides(
            tiny_models,
            root,
            out,
            "log_every=1",
            "ckpt_every=2",
            "log_sample_ids=true",
            "keep_checkpoints=0",
            *extra,
        ),
    ]
    proc = subprocess.run(
        cmd, cwd=REPO, env=torchrun_env(), capture_output=True, text=True, timeout=300
    )
    assert (proc.returncode == 0) == ok, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


def log(out: Path) -> list[dict]:
    return [json.loads(x) for x in (out / "train_log.jsonl").read_text().splitlines()]


def sample_log(out: Path, rank: int) -> list[dict]:
    return [json.loads(x) for x in (out / f"samples_rank{rank}.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def ddp_reference(tmp_path_factory, tiny_models, train_root) -> Path:
    out = tmp_path_factory.mktemp("ddp_ref")
    torchrun(tiny_models, train_root, out, "steps=6", "distributed=ddp")
    return out


def test_ddp_ranks_see_disjoint_samples(ddp_reference, train_root):
    ranks = [sample_log(ddp_reference, r) for r in (0, 1)]
    assert [len(x) for x in ranks] == [6, 6]
    for epoch in (0, 1):
        seen = [[i for rec in recs if rec["epoch"] == epoch for i in rec["ids"]] for recs in ranks]
        assert seen[0] and seen[1]
        assert not set(seen[0]) & set(seen[1])  # disjoint within an epoch
    epoch0 = {i for recs in ranks for rec in recs if rec["epoch"] == 0 for i in rec["ids"]}
    assert epoch0 == {f"cl-{i}" for i in range(8)} | {f"pi-{i}" for i in range(8)}
    records = log(ddp_reference)
    assert [r["step"] for r in records] == [1, 2, 3, 4, 5, 6]
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in records)
    ck = ckpt_io.latest_checkpoint(ddp_reference)
    assert ckpt_io.read_state(ck)["world_size"] == 2
    assert {p.name for p in ck.glob("rank*.json")} == {"rank0.json", "rank1.json"}


def test_ddp_resume_matches_the_uninterrupted_run(tmp_path, ddp_reference, tiny_models, train_root):
    out = tmp_path / "ddp"
    torchrun(tiny_models, train_root, out, "steps=4", "distributed=ddp")
    stdout = torchrun(tiny_models, train_root, out, "steps=6", "distributed=ddp")
    assert "resumed from" in stdout and "step_00000004" in stdout
    ref = log(ddp_reference)
    assert [r["loss"] for r in log(out)[4:]] == [r["loss"] for r in ref[4:]]
    for rank in (0, 1):
        assert [r["ids"] for r in sample_log(out, rank)] == [
            r["ids"] for r in sample_log(ddp_reference, rank)
        ]


@pytest.fixture(scope="module")
def fsdp_reference(tmp_path_factory, tiny_models, train_root) -> Path:
    """Checkpoints written in the background (async, on a gloo group of their own)."""
    out = tmp_path_factory.mktemp("fsdp_ref")
    torchrun(tiny_models, train_root, out, "steps=6", "distributed=fsdp", "async_checkpoint=true")
    return out


def test_fsdp_matches_ddp(fsdp_reference, ddp_reference):
    got = [r["loss"] for r in log(fsdp_reference)]
    want = [r["loss"] for r in log(ddp_reference)]
    assert got == pytest.approx(want, rel=1e-5)
    # FSDP checkpoints hold each rank's shards (here written asynchronously); read back whole
    # they are the DDP run's tensors at that step
    fsdp_w = ckpt_io.load_full(fsdp_reference / "checkpoints" / "step_00000004", "model")
    ddp_w = ckpt_io.load_full(ddp_reference / "checkpoints" / "step_00000004", "model")
    assert fsdp_w.keys() == ddp_w.keys()
    assert all(fsdp_w[k].shape == ddp_w[k].shape for k in ddp_w)
    assert all(torch.allclose(fsdp_w[k], ddp_w[k], atol=1e-5) for k in ddp_w)


def test_killed_fsdp_run_resumes_on_two_ranks_and_on_one(
    tmp_path, fsdp_reference, tiny_models, train_root
):
    out = tmp_path / "killed"
    crash = ("-m", "tests.trainer.crash_run", "5")
    torchrun(tiny_models, train_root, out, "steps=6", "distributed=fsdp", entry=crash, ok=False)
    assert ckpt_io.latest_checkpoint(out).name == "step_00000004"
    assert [r["step"] for r in log(out)] == [1, 2, 3, 4]  # step 5 was lost with the kill
    one = tmp_path / "one_rank"
    shutil.copytree(out, one)

    # same world size: the uninterrupted run's losses and batches, exactly
    stdout = torchrun(tiny_models, train_root, out, "steps=6", "distributed=fsdp")
    assert "resumed from" in stdout and "step_00000004" in stdout
    assert [r["loss"] for r in log(out)[4:]] == [r["loss"] for r in log(fsdp_reference)[4:]]
    for rank in (0, 1):  # by step: the killed run logged step 5's batch before it died
        got = {r["step"]: r["ids"] for r in sample_log(out, rank)}
        assert got == {r["step"]: r["ids"] for r in sample_log(fsdp_reference, rank)}

    # one rank: every tensor resharded from the two ranks' shards, the data at the same point
    ckpt = one / "checkpoints" / "step_00000004"
    cfg = load_train_config(
        CONFIG_DIR / "debug_cpu.yaml",
        debug_overrides(tiny_models, train_root, one, "steps=6", "log_every=1", "ckpt_every=2"),
    )
    run = build(cfg, init_distributed("none", "cpu"))
    assert run.step == 4 and run.ema.num_updates == 4
    for part, have in (("model", run.core.state_dict()), ("ema", run.ema.state_dict())):
        saved = ckpt_io.load_full(ckpt, part)
        assert saved.keys() == have.keys()
        assert all(torch.equal(saved[k], have[k]) for k in saved), part
    saved = ckpt_io.load_full(ckpt, "optim")
    optim = get_optimizer_state_dict(run.model, run.optimizer)["state"]
    assert {f"{p}.{k}" for p, st in optim.items() for k in st} == set(saved)
    assert all(torch.equal(v, saved[f"{p}.{k}"]) for p, st in optim.items() for k, v in st.items())
    two_rank = json.loads((ckpt / "rank0.json").read_text())
    frac = two_rank["loader"]["batches_emitted"] / two_rank["batches_in_epoch"]
    state = run.loader.state_dict()
    assert state["world_size"] == 1 and state["epoch"] == two_rank["loader"]["epoch"]
    assert state["batches_emitted"] == int(frac * run.loader.batches_in_epoch(state["epoch"]))
    resumed = train(cfg)["history"]
    assert [r["step"] for r in resumed] == [5, 6]
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in resumed)
