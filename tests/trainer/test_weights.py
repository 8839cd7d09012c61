"""Weights straight into shards: the safetensors byte-range reader (and the files it refuses),
the meta-device build, and host memory per rank while a sharded model loads."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from tests.trainer.trainer_fixtures import REPO, TORCHRUN_2, torchrun_env
from trainer.model import SamaTransformer
from trainer.sama_modules import SamaConfig, new_modules_init
from trainer.weights import (
    SafetensorsIndex,
    WeightsError,
    dit_sources,
    fill_parameters,
    materialize,
    memory_source,
    meta_model,
    read_header,
)


def test_row_ranges_equal_safetensors_own_reader(tmp_path):
    tensors = {
        "a": torch.randn(7, 3, 2),
        "b": torch.randn(5, 4).to(torch.bfloat16),
        "scalar": torch.tensor(3.5),
        "empty": torch.zeros(0, 4),
        "ints": torch.arange(10, dtype=torch.int64),
    }
    save_file(tensors, str(tmp_path / "t.safetensors"))
    ref = load_file(str(tmp_path / "t.safetensors"))
    index = SafetensorsIndex.of(tmp_path / "t.safetensors")
    for name, t in ref.items():
        assert torch.equal(index.rows(name), t), name
    assert torch.equal(index.rows("a", 2, 5), ref["a"][2:5])
    assert torch.equal(index.rows("b", 4, 5), ref["b"][4:5])
    assert index.rows("a", 3, 3).shape == (0, 3, 2)
    with pytest.raises(WeightsError, match="outside"):
        index.rows("a", 5, 8)


def _raw(tmp_path: Path, header: object, data: bytes = b"", length: int | None = None) -> Path:
    blob = json.dumps(header).encode() if not isinstance(header, bytes) else header
    path = tmp_path / "bad.safetensors"
    path.write_bytes(struct.pack("<Q", len(blob) if length is None else length) + blob + data)
    return path


@pytest.mark.parametrize(
    ("header", "data", "length", "message"),
    [
        (b"", b"", None, "header is not JSON"),
        (
            {"x": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}},
            b"",
            10**12,
            "does not fit",
        ),
        (b"not json", b"", None, "not JSON"),
        ([1, 2], b"", None, "not a JSON object"),
        ({"x": {"dtype": "F99", "shape": [2], "data_offsets": [0, 8]}}, b"\0" * 8, None, "dtype"),
        (
            {"x": {"dtype": "F32", "shape": [2], "data_offsets": [0, 800]}},
            b"\0" * 8,
            None,
            "do not hold",
        ),
        (
            {"x": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}},
            b"\0" * 8,
            None,
            "do not hold",
        ),
        ({"x": {"dtype": "F32", "shape": [-2], "data_offsets": [0, 8]}}, b"\0" * 8, None, "shape"),
        ({"x": {"dtype": "F32", "shape": [2], "data_offsets": "0-8"}}, b"\0" * 8, None, "offsets"),
    ],
)
def test_malformed_files_are_refused_with_the_reason(tmp_path, header, data, length, message):
    with pytest.raises(WeightsError, match=message):
        read_header(_raw(tmp_path, header, data, length))


def test_too_short_file_is_refused(tmp_path):
    (tmp_path / "short.safetensors").write_bytes(b"\x01\x02")
    with pytest.raises(WeightsError, match="too short"):
        read_header(tmp_path / "short.safetensors")


def test_meta_build_loads_the_same_model_as_from_pretrained(tiny_models):
    """Meta device -> materialise -> rows read from the files + seeded new modules: the same
    tensors (and RoPE tables) as diffusers' from_pretrained + the eager SAMA init."""
    sama = SamaConfig(siglip_dim=32, mlp_hidden=16)
    ref = SamaTransformer.from_pretrained_dit(f"{tiny_models}/wan", config=sama, init_seed=3)
    from diffusers import WanTransformer3DModel

    config = dict(WanTransformer3DModel.load_config(f"{tiny_models}/wan", subfolder="transformer"))
    model = meta_model(config, sama, init_seed=3)
    assert all(p.is_meta for p in model.parameters())
    materialize(model, torch.device("cpu"))
    sources = dit_sources(Path(tiny_models) / "wan" / "transformer")
    fresh = new_modules_init(sama, model.dim, 3)
    sources.update({k: memory_source(v, "fresh") for k, v in fresh.items()})
    fill_parameters(model, sources)
    want = ref.state_dict()
    assert model.state_dict().keys() == want.keys()
    assert all(torch.equal(v, want[k]) for k, v in model.state_dict().items())
    assert torch.equal(model.dit.rope.freqs_cos, ref.dit.rope.freqs_cos)
    with pytest.raises(WeightsError, match="shape mismatches"):
        fill_parameters(model, {"dit.proj_out.bias": memory_source(torch.zeros(3), "bad")})


@pytest.fixture(scope="module")
def big_dit(tmp_path_factory) -> tuple[str, int]:
    """A random Wan DiT of ~320 MB (80M fp32 parameters), saved with save_pretrained."""
    from diffusers import WanTransformer3DModel

    torch.manual_seed(0)
    dit = WanTransformer3DModel(
        num_attention_heads=6,
        attention_head_dim=128,
        ffn_dim=3072,
        num_layers=8,
        text_dim=64,
        freq_dim=32,
        in_channels=16,
        out_channels=16,
    )
    root = tmp_path_factory.mktemp("big_models")
    dit.save_pretrained(root / "big" / "transformer", safe_serialization=True)
    size = (root / "big" / "transformer" / "diffusion_pytorch_model.safetensors").stat().st_size
    return str(root), size


def test_sharded_load_keeps_host_memory_per_rank_well_under_the_model(tmp_path, big_dit):
    """2 FSDP ranks each peak at about half the model while loading (their own rows, read
    straight into their shards); one unsharded process holds all of it. Measured here: 307 MiB
    of weights, 321 MiB unsharded, 171 MiB per FSDP rank (the rest is module objects)."""
    models, size = big_dit
    probe = str(Path(__file__).with_name("rss_probe.py"))
    cmd = [
        *TORCHRUN_2,
        probe,
        models,
        str(tmp_path),
        "fsdp",
    ]
    for c in (cmd, [sys.executable, probe, models, str(tmp_path), "none"]):
        proc = subprocess.run(
            c, cwd=REPO, env=torchrun_env(), capture_output=True, text=True, timeout=300
        )
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    grow = lambda r: (r["peak_kib"] - r["before_kib"]) * 1024  # noqa: E731
    sharded = [json.loads((tmp_path / f"rss_rank{r}_fsdp.json").read_text()) for r in (0, 1)]
    whole = json.loads((tmp_path / "rss_rank0_none.json").read_text())
    assert sum(r["local_params"] for r in sharded) == whole["local_params"]
    assert grow(whole) > 0.9 * size  # the measurement sees a full copy when there is one
    for r in sharded:
        assert grow(r) < 0.65 * size, (grow(r) / size, r)  # half the model + ~16 MiB of modules
    print(
        f"peak host RSS growth while loading {size / 2**20:.0f} MiB: unsharded "
        f"{grow(whole) / 2**20:.0f} MiB; FSDP 2 ranks "
        f"{[round(grow(r) / 2**20) for r in sharded]} MiB"
    )
