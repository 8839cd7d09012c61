"""bench/gpu_check.py: one clear line and exit 0 without CUDA; its code paths at toy sizes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from bench import gpu_check

REPO = Path(__file__).resolve().parents[2]


def test_without_cuda_it_skips_in_one_line(monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert gpu_check.main([]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert out == ["gpu_check: skipped: no CUDA device visible (nothing measured)"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="the command would measure the GPU")
def test_the_command_exits_zero_without_cuda():
    proc = subprocess.run(
        [sys.executable, "-m", "bench.gpu_check"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0 and "skipped" in proc.stdout


def test_smoke_runs_every_check_and_prints_one_table(capsys):
    assert gpu_check.main(["--smoke"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].split() == ["check", "seconds", "peak", "GiB", "plan", "GiB"]
    rows = lines[2:]
    assert len(rows) == 4
    assert rows[0].startswith("Wan VAE encode") and rows[1].startswith("SigLIP")
    assert "fwd+bwd" in rows[2] and "14B block" in rows[3]
    assert all(r.split()[-2] == "n/a" for r in rows)  # no CUDA: no peak memory claimed
