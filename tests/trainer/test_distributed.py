"""``torchrun --nproc_per_node 2`` on CPU (gloo): DDP trains, ranks see disjoint samples,
a multi-rank run resumes exactly, and FSDP2 matches DDP.

One DDP reference run of 6 steps; a second DDP run stops at 4 and is resumed to 6 by a new
``torchrun``; an FSDP run of 4 steps. Every run logs its sample ids per rank
(``log_sample_ids``) and its losses (``train_log.jsonl``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.trainer.conftest import CONFIG_DIR, debug_overrides
from trainer import checkpoint as ckpt_io

REPO = Path(__file__).resolve().parents[2]


def torchrun_env() -> dict[str, str]:
    return {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "PYTHONPATH": str(REPO),
    }


def torchrun(tiny_models, root, out, *extra) -> str:
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "trainer.train",
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
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
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


def test_fsdp_matches_ddp(tmp_path, ddp_reference, tiny_models, train_root):
    out = tmp_path / "fsdp"
    torchrun(tiny_models, train_root, out, "steps=4", "distributed=fsdp")
    got = [r["loss"] for r in log(out)]
    want = [r["loss"] for r in log(ddp_reference)[:4]]
    assert got == pytest.approx(want, rel=1e-5)
    # FSDP checkpoints hold each rank's shards; read back whole they are the DDP run's tensors
    fsdp_w = ckpt_io.load_full(ckpt_io.latest_checkpoint(out), "model")
    ddp_w = ckpt_io.load_full(ddp_reference / "checkpoints" / "step_00000004", "model")
    assert fsdp_w.keys() == ddp_w.keys()
    assert all(fsdp_w[k].shape == ddp_w[k].shape for k in ddp_w)
    assert all(torch.allclose(fsdp_w[k], ddp_w[k], atol=1e-5) for k in ddp_w)
