"""Context (sequence) parallelism for SAMA's 65k-token sequences: Ulysses all-to-all around SDPA.

One video sample at SAMA's settings is 65,585 tokens (SAMA.md 1); a group of ``c`` ranks splits
it into ``c`` equal chunks of consecutive tokens (zero-padded at the end). Everything in a Wan
block acts on each token alone (AdaLN modulation, LayerNorms, q/k RMSNorm, RoPE, the text
cross-attention whose keys are the 512 text tokens every rank holds, the MLP) except the
self-attention, which mixes all tokens. Around it, one all-to-all trades the token split for a
head split (``[B, L/c, H, Dh] -> [B, L, H/c, Dh]``), SDPA runs on full sequences of ``H/c`` heads
(pad tokens dropped, so they are never attended to), and a second all-to-all trades back. The
arithmetic is the unsplit model's, head by head (tests/trainer/test_context_parallel.py).

Gradients: each rank computes the loss on the gathered outputs (the heads run on local tokens
first, then ``gather_tokens``, whose backward keeps the rank's own slice), so every parameter
gradient on a rank is the part due to its tokens and the part sums over the group; the
data-parallel all-reduce / reduce-scatter over all ranks does that sum (trainer/step.py scales
the loss by the world size to undo its averaging).

Shape legend: B batch, L tokens (Lc per rank, padded), H heads, Dh head width, D width.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn


class _AllToAll(torch.autograd.Function):
    """``all_to_all_single`` on dim-0 chunks; with equal chunks it is its own adjoint."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, group) -> torch.Tensor:
        ctx.group = group
        x = x.contiguous()  # chunks are split from the flat memory; empty_like keeps the strides
        out = torch.empty_like(x)
        dist.all_to_all_single(out, x, group=group)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        grad = grad.contiguous()
        out = torch.empty_like(grad)
        dist.all_to_all_single(out, grad, group=ctx.group)
        return out, None


def tokens_to_heads(x_BLcHD: torch.Tensor, group, size: int) -> torch.Tensor:
    """``[B, Lc, H, Dh]`` (my tokens, all heads) -> ``[B, c*Lc, H/c, Dh]`` (all tokens, my heads)."""
    b, lc, h, dh = x_BLcHD.shape
    chunks = x_BLcHD.reshape(b, lc, size, h // size, dh).permute(2, 0, 1, 3, 4)
    out = _AllToAll.apply(chunks, group)  # [c (token chunk i), B, Lc, H/c, Dh]
    return out.permute(1, 0, 2, 3, 4).reshape(b, size * lc, h // size, dh)


def heads_to_tokens(x_BLHD: torch.Tensor, group, size: int) -> torch.Tensor:
    """The inverse of ``tokens_to_heads``."""
    b, lp, hc, dh = x_BLHD.shape
    chunks = x_BLHD.reshape(b, size, lp // size, hc, dh).permute(1, 0, 2, 3, 4)
    out = _AllToAll.apply(chunks, group)  # [c (head group i), B, Lc, H/c, Dh]
    return out.permute(1, 2, 0, 3, 4).reshape(b, lp // size, size * hc, dh)


class _GatherTokens(torch.autograd.Function):
    """All-gather along dim 1; backward returns this rank's slice of the gradient (each rank
    computes the same loss from the gathered tensor, so no sum is taken here)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, group, size: int, rank: int) -> torch.Tensor:
        ctx.rank, ctx.chunk = rank, x.shape[1]
        x = x.contiguous()
        parts = [torch.empty_like(x) for _ in range(size)]
        dist.all_gather(parts, x, group=group)
        return torch.cat(parts, dim=1)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        a = ctx.rank * ctx.chunk
        return grad[:, a : a + ctx.chunk].contiguous(), None, None, None


class ContextParallel:
    """A rank's place in its context-parallel group and the split of one sequence."""

    def __init__(self, group, size: int, rank: int) -> None:
        self.group, self.size, self.rank = group, size, rank
        self.length = 0  # real (unpadded) tokens of the current forward

    def chunk(self, length: int) -> int:
        return -(-length // self.size)

    def split(self, x_BLX: torch.Tensor) -> torch.Tensor:
        """This rank's chunk of dim 1 (zero-padded to ``size`` equal chunks)."""
        length, c = x_BLX.shape[1], self.chunk(x_BLX.shape[1])
        pad = c * self.size - length
        if pad:
            x_BLX = torch.cat([x_BLX, x_BLX.new_zeros(x_BLX.shape[0], pad, *x_BLX.shape[2:])], 1)
        return x_BLX[:, self.rank * c : (self.rank + 1) * c]

    def gather(self, x_BLcX: torch.Tensor) -> torch.Tensor:
        """Every rank's chunk, in order, padding dropped: ``[B, length, ...]``."""
        full = _GatherTokens.apply(x_BLcX, self.group, self.size, self.rank)
        return full[:, : self.length]


class UlyssesWanAttnProcessor:
    """Wan's self-attention processor (diffusers ``WanAttnProcessor``, text-to-video path) with
    the all-to-all pair around SDPA. q/k/v projections, the q/k RMSNorm over all heads and RoPE
    run on the local tokens exactly as diffusers does them."""

    def __init__(self, cp: ContextParallel) -> None:
        self.cp = cp

    def __call__(
        self,
        attn: nn.Module,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        rotary_emb: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        if encoder_hidden_states is not None or attention_mask is not None:
            raise ValueError("UlyssesWanAttnProcessor is for unmasked self-attention only")
        from diffusers.models.transformers.transformer_wan import _get_qkv_projections

        query, key, value = _get_qkv_projections(attn, hidden_states, None)
        query, key = attn.norm_q(query), attn.norm_k(key)
        query, key, value = (x.unflatten(2, (attn.heads, -1)) for x in (query, key, value))
        if rotary_emb is not None:
            query, key = _rope(query, *rotary_emb), _rope(key, *rotary_emb)
        cp, length = self.cp, self.cp.length
        q, k, v = (tokens_to_heads(x, cp.group, cp.size)[:, :length] for x in (query, key, value))
        out = F.scaled_dot_product_attention(
            q.permute(0, 2, 1, 3), k.permute(0, 2, 1, 3), v.permute(0, 2, 1, 3)
        ).permute(0, 2, 1, 3)
        pad = cp.chunk(length) * cp.size - length
        if pad:
            out = torch.cat([out, out.new_zeros(out.shape[0], pad, *out.shape[2:])], dim=1)
        out = heads_to_tokens(out, cp.group, cp.size).flatten(2, 3).type_as(query)
        return attn.to_out[1](attn.to_out[0](out))


def _rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """diffusers' Wan ``apply_rotary_emb``, line for line (same dtypes, same rounding)."""
    x1, x2 = x.unflatten(-1, (-1, 2)).unbind(-1)
    cos, sin = cos[..., 0::2], sin[..., 1::2]
    out = torch.empty_like(x)
    out[..., 0::2] = x1 * cos - x2 * sin
    out[..., 1::2] = x1 * sin + x2 * cos
    return out.type_as(x)
