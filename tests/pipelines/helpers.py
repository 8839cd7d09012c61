"""Helpers the pipeline tests share: the tiny-model bundle and the demo build config."""

from __future__ import annotations

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
