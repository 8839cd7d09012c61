"""Helpers the pipeline tests share: the tiny-model bundle and the demo build config."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pipelines.config import BuildConfig, load_build_config

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def tiny_models(factory) -> Path:
    """One tiny-model bundle per session (shared by the test modules through the base temp)."""
    from sama.encoders.tiny import make_tiny_models

    root = factory.getbasetemp() / "tiny_models_build"
    if not (root / "TINY_MODELS.json").exists():
        make_tiny_models(root)
    return root


def demo_config(models: Path, input_uri: str, output_uri: str, *overrides: str) -> BuildConfig:
    """``configs/build_demo.yaml`` on the tiny models, strict mode on."""
    return load_build_config(
        CONFIGS / "build_demo.yaml",
        [
            f"models_dir={models}",
            f"input.uri={input_uri}",
            f"output.uri={output_uri}",
            "engine.strict=true",
            *overrides,
        ],
    )


def assert_close_bf16(row: dict, ref: dict, column: str, where: str) -> None:
    """The tensor ``column`` of two rows equal to bf16 precision. For builds that ran in other
    processes (a Ray actor vs this process): torch's CPU kernels sum in an order that depends on
    the thread count, so a value can land one bf16 step away (relative 2^-8)."""
    import numpy as np

    from datasets_spec.tensors import decode_array

    a = decode_array(row[column], row[f"{column}_shape"], row[f"{column}_dtype"]).astype(np.float32)
    b = decode_array(ref[column], ref[f"{column}_shape"], ref[f"{column}_dtype"]).astype(np.float32)
    assert a.shape == b.shape, (where, column)
    assert np.allclose(a, b, rtol=2**-6, atol=2**-8), (where, column, float(np.abs(a - b).max()))


@contextmanager
def local_ray(num_cpus: int = 2) -> Iterator[str]:
    """A local Ray (object store capped at 200 MiB, no dashboard); yields its GCS address."""
    import ray

    ray.init(address="local", num_cpus=num_cpus, object_store_memory=200 * 2**20,
             include_dashboard=False, logging_level="WARNING")  # fmt: skip
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()
