"""``sama train`` on what ``sama publish`` produced: the dry-run folder, and ``hf://`` served by a
local Hub server through the node cache, each resumed; and hostile shards refused before
training, in a subprocess whose peak RSS is measured."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from pipelines.cli_tools import publish_main
from tests.hostile import CASES, run_measured, write_hostile_set
from tests.hub_server import serving_hub
from tests.trainer.conftest import CONFIG_DIR, debug_overrides
from tests.trainer.trainer_fixtures import tiny_provenance, write_train_shards
from trainer.train import train_main

DEBUG = CONFIG_DIR / "debug_cpu.yaml"
REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def local_hub(monkeypatch):
    with serving_hub(monkeypatch) as server:
        yield server


@pytest.fixture(scope="module")
def published(tmp_path_factory, tiny_models) -> Path:
    """``sama publish --dry-run`` of a small built dataset (8 clips + 8 image pairs)."""
    base = tmp_path_factory.mktemp("published")
    root = write_train_shards(base / "built", tiny_models)
    out = base / "repo"
    assert publish_main([root, "me/tiny", "--dry-run", str(out)]) == 0
    assert (out / "data" / "clips" / "c0.parquet").exists() and (out / "README.md").exists()
    return out


def run(tiny_models, root, out, *extra) -> list[dict]:
    argv = [
        str(DEBUG),
        *debug_overrides(
            tiny_models, root, out, "log_every=1", "ckpt_every=3", "log_sample_ids=true", *extra
        ),
    ]
    assert train_main(argv) == 0
    return [json.loads(x) for x in (Path(out) / "train_log.jsonl").read_text().splitlines()]


def sample_ids(out: Path) -> list[list[str]]:
    lines = (out / "samples_rank0.jsonl").read_text().splitlines()
    return [json.loads(x)["ids"] for x in lines]


def test_train_from_the_published_folder_and_resume(published, tiny_models, tmp_path, capsys):
    out = tmp_path / "run"
    first = run(tiny_models, published, out, "steps=3")
    assert [r["step"] for r in first] == [1, 2, 3]
    again = run(tiny_models, published, out, "steps=5")
    assert "resumed from" in capsys.readouterr().out
    assert [r["step"] for r in again] == [1, 2, 3, 4, 5]  # the log of one run, continued
    straight = tmp_path / "straight"
    run(tiny_models, published, straight, "steps=5")
    assert sample_ids(out)[-2:] == sample_ids(straight)[-2:]  # resume is exact


def test_train_from_hf_through_the_cache_and_resume(published, tiny_models, tmp_path, local_hub):
    from huggingface_hub import HfApi

    api = HfApi(endpoint=local_hub.url)
    api.create_repo("me/tiny", repo_type="dataset")
    api.upload_folder(
        repo_id="me/tiny", folder_path=published, repo_type="dataset", commit_message="sama publish"
    )
    cache, out = tmp_path / "cache", tmp_path / "hf-run"
    uri = "hf://datasets/me/tiny"
    run(tiny_models, uri, out, "steps=3", f"data.cache_dir={cache}")
    assert sorted(p.name.split("-", 1)[1] for p in (cache / "shards").iterdir()) == [
        "c0.parquet",
        "p0.parquet",
    ]
    resolved = local_hub.calls["resolve"]
    log = run(tiny_models, uri, out, "steps=5", f"data.cache_dir={cache}")
    assert [r["step"] for r in log][-2:] == [4, 5]
    assert local_hub.calls["resolve"] == resolved  # resumed from the cache: nothing fetched
    local = tmp_path / "local-run"
    run(tiny_models, published, local, "steps=5")
    assert sample_ids(out) == sample_ids(local)  # the same batches as from the folder


def test_hostile_shards_stop_sama_train_before_training(tiny_models, tmp_path):
    root = tmp_path / "hostile"
    write_hostile_set(root, tiny_provenance(tiny_models, "clips"), channels=16)
    write_train_shards(root, tiny_models, image_pairs=0)  # one good shard next to them
    out = tmp_path / "run"
    cmd = [
        sys.executable,
        "-m",
        "sama.cli",
        "train",
        str(DEBUG),
        *debug_overrides(tiny_models, root, out, "steps=2"),
    ]
    rc, text, rss_mb = run_measured(cmd, cwd=REPO_ROOT, env=_env(), timeout=300)
    assert rc == 2, text
    assert "sama train: configuration error: refusing the training data" in text
    for case, needle in CASES.items():
        (line,) = [x for x in text.splitlines() if f"clips/{case}.parquet" in x]
        assert needle in line, (case, line)
    assert "Traceback" not in text
    assert not (out / "train_log.jsonl").exists()  # nothing was trained
    assert rss_mb < 2048, f"peak RSS {rss_mb:.0f} MiB"


def _env() -> dict[str, str]:
    import os

    return {
        **os.environ,
        "PYTHONPATH": str(REPO_ROOT),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "OMP_NUM_THREADS": "1",
    }
