"""Session fixtures of the training tests: the tiny model bundle and shards that fit it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.trainer.trainer_fixtures import write_train_shards

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> str:
    """``sama.encoders.tiny.make_tiny_models`` output (``wan/``, ``siglip/``)."""
    from sama.encoders.tiny import make_tiny_models

    out = tmp_path_factory.mktemp("tiny_models")
    make_tiny_models(out)
    return str(out)


@pytest.fixture(scope="session")
def train_root(tmp_path_factory, tiny_models) -> str:
    """8 clips (3 latent frames, 4x6) + 8 image pairs, with stored prompt embeddings."""
    return write_train_shards(tmp_path_factory.mktemp("train_data"), tiny_models)


def debug_overrides(models: str, root: str, out: Path | str, *extra: str) -> list[str]:
    """``configs/debug_cpu.yaml`` pointed at the fixtures; ``extra`` overrides win."""
    return [
        f"models_dir={models}",
        f"data.root={root}",
        f"output_dir={out}",
        "data.num_workers=1",
        "data.prefetch=2",
        *extra,
    ]


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models run fastest on one thread, and a busy CI box makes spinning OpenMP threads
    orders of magnitude slower (measured: 0.015 s/step on 1 thread vs up to 1.3 s on 2)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
