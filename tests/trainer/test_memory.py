"""The memory model behind ``--plan``: its per-token activation coefficients are what a
diffusers Wan block really saves for backward (measured here with ``saved_tensors_hooks``)."""

from __future__ import annotations

import pytest
import torch
from diffusers.models.transformers.transformer_wan import WanRotaryPosEmbed, WanTransformerBlock

from trainer.memory import DiTDims, Sample, Setup, activation_bytes, block_token_bytes, estimate


def _saved_bytes_per_token(dim: int, ffn: int, heads: int, dtype) -> float:
    torch.manual_seed(0)
    tokens = 120
    block = WanTransformerBlock(dim, ffn, heads, "rms_norm_across_heads", True, 1e-6).to(dtype)
    rope = WanRotaryPosEmbed(dim // heads, (1, 2, 2), 1024)
    x = torch.randn(1, tokens, dim, dtype=dtype, requires_grad=True)
    text = torch.randn(1, 8, dim, dtype=dtype, requires_grad=True)
    temb = torch.randn(1, 6, dim, dtype=dtype, requires_grad=True)
    cos, sin = rope(torch.zeros(1, 16, 1, 2, 2 * tokens))
    shared = {t.untyped_storage().data_ptr() for t in (x, cos, sin)}
    seen: dict[int, int] = {}

    def pack(t):
        ptr = t.untyped_storage().data_ptr()
        if ptr not in shared and tokens in t.shape:  # per-token tensors (not weights)
            seen[ptr] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        block(x, text, temb, (cos, sin))
    return sum(seen.values()) / tokens


@pytest.mark.parametrize(("dtype", "act"), [(torch.bfloat16, 2), (torch.float32, 4)])
@pytest.mark.parametrize(("dim", "ffn", "heads"), [(96, 192, 2), (192, 256, 4)])
def test_block_coefficients_are_what_a_wan_block_saves(dtype, act, dim, ffn, heads):
    dims = DiTDims(1, dim, ffn, heads, (1, 2, 2), 0, 0)
    measured = _saved_bytes_per_token(dim, ffn, heads, dtype)
    assert block_token_bytes(dims, act) == pytest.approx(measured, rel=0.03)


def test_checkpointing_offload_and_context_parallel_each_cut_the_right_term():
    dims = DiTDims(40, 5120, 13824, 40, (1, 2, 2), 351_000_000, 250_000_000)
    video = Sample("video", 1, 65_585, 32_760)
    base = Setup(56, "fsdp", True, True, False, 1, (video,), 4.0)
    acts = activation_bytes(dims, base, video)
    assert acts["saved block inputs"] == 40 * 65_585 * 5120 * 2  # one bf16 input per block
    offload = activation_bytes(dims, Setup(**{**base.__dict__, "offload": True}), video)
    assert offload["saved block inputs"] == 2 * 65_585 * 5120 * 2  # two in flight
    split = activation_bytes(dims, Setup(**{**base.__dict__, "context_parallel": 4}), video)
    assert split["one block recomputed"] == pytest.approx(
        acts["one block recomputed"] / 4, rel=1e-4
    )
    est = estimate(dims, Setup(**{**base.__dict__, "offload": True}))
    assert est.host["offloaded block inputs (pinned)"] == 40 * 65_585 * 5120 * 2
    sharded = estimate(dims, base).items["parameters (fp32 master)"]
    assert sharded == 4 * dims.total_params / 56
