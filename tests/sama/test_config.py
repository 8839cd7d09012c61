"""Typed config: defaults <- YAML <- dotted overrides; bad config fails with a helpful message."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import pytest

from sama.config import check, config_hash, dump_config, load_config, to_dict
from sama.errors import ConfigError


@dataclass
class Optim:
    lr: float = 2e-5
    betas: tuple[float, float] = (0.9, 0.999)
    kind: Literal["adamw", "sgd"] = "adamw"

    def validate(self) -> None:
        check(self.lr > 0, f"lr must be > 0 (got {self.lr}); e.g. optim.lr=2e-5")


@dataclass
class Run:
    name: str = "run"
    steps: int = 10
    tags: list[str] = field(default_factory=list)
    device: str | None = None
    optim: Optim = field(default_factory=Optim)


def test_defaults_yaml_overrides_order(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("steps: 20\noptim:\n  lr: 1.0e-4\n")
    cfg = load_config(Run, p, ["optim.kind=sgd", "tags=[a, b]", "steps=30"])
    assert cfg.steps == 30 and cfg.optim.lr == 1e-4 and cfg.optim.kind == "sgd"
    assert cfg.tags == ["a", "b"] and cfg.optim.betas == (0.9, 0.999) and cfg.name == "run"


def test_unknown_key_suggests(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown config key 'optim.lrr'.*Did you mean 'lr'"):
        load_config(Run, overrides=["optim.lrr=1"])
    p = tmp_path / "c.yaml"
    p.write_text("stepz: 3\n")
    with pytest.raises(ConfigError, match="stepz.*Valid keys"):
        load_config(Run, p)


def test_wrong_type():
    with pytest.raises(ConfigError, match="steps: expected an integer, got 'many'"):
        load_config(Run, overrides=["steps=many"])
    with pytest.raises(ConfigError, match=r"optim.betas: expected 2 items"):
        load_config(Run, overrides=["optim.betas=[0.9]"])


def test_invalid_value_says_how_to_fix():
    with pytest.raises(ConfigError, match=r"optim.lr must be > 0 .*optim.lr=2e-5"):
        load_config(Run, overrides=["optim.lr=-1"])
    with pytest.raises(ConfigError, match=r"'adam' is not one of \['adamw', 'sgd'\]"):
        load_config(Run, overrides=["optim.kind=adam"])


def test_bad_yaml_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(Run, tmp_path / "nope.yaml")
    p = tmp_path / "bad.yaml"
    p.write_text("- a list\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(Run, p)
    with pytest.raises(ConfigError, match="key.subkey=value"):
        load_config(Run, overrides=["steps"])


def test_dump_roundtrip_and_hash(tmp_path):
    cfg = load_config(Run, overrides=["device=cuda", "optim.lr=3e-5"])
    dump_config(cfg, tmp_path / "resolved.yaml")
    again = load_config(Run, tmp_path / "resolved.yaml")
    assert to_dict(again) == to_dict(cfg)
    assert config_hash(again) == config_hash(cfg) != config_hash(Run())


def test_enum_keys_dump_as_plain_strings(tmp_path):
    from enum import StrEnum

    class Task(StrEnum):
        A = "a"

    @dataclass
    class Mix:
        mix: dict[str, float] = field(default_factory=lambda: {Task.A: 1.0})

    dump_config(Mix(), tmp_path / "m.yaml")
    assert load_config(Mix, tmp_path / "m.yaml").mix == {"a": 1.0}
