"""Activation offload: the checkpointed input of each DiT block kept in pinned host memory.

With per-block checkpointing the only activations alive between forward and backward are the
block inputs, ``layers x tokens x dim`` values: 40 x 65,585 x 5,120 bf16 = 26.9 GB per video
sample at SAMA's settings (SAMA.md 1), a third of an 80 GB GPU. torch's non-reentrant
checkpoint stores a block's inputs as saved tensors, so a ``saved_tensors_hooks`` pair around
the call can move exactly that one tensor (the hidden states; the text, AdaLN and RoPE inputs
are shared by every block and stay put) to the host on the way forward and back to the device
when the block is recomputed. The copies are non-blocking on the compute stream, so they are
ordered with the kernels around them; at ~0.7 GB per block and tens of GB/s they take tens of
milliseconds against a block's forward + recompute + backward of ~1 s at 14B.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch


@contextlib.contextmanager
def offload_input(x: torch.Tensor, stats: dict[str, int] | None = None) -> Iterator[None]:
    """Inside, a saved tensor that *is* ``x`` is stored on the host (pinned on CUDA)."""

    def pack(t: torch.Tensor):
        if t.data_ptr() != x.data_ptr() or t.shape != x.shape or t.dtype != x.dtype:
            return t
        host = torch.empty(t.shape, dtype=t.dtype, device="cpu", pin_memory=t.is_cuda)
        host.copy_(t, non_blocking=t.is_cuda)
        if stats is not None:
            stats["tensors"] = stats.get("tensors", 0) + 1
            stats["bytes"] = stats.get("bytes", 0) + host.numel() * host.element_size()
        return (t.device, host)

    def unpack(packed):
        if isinstance(packed, tuple):
            device, host = packed
            return host.to(device, non_blocking=True)
        return packed

    with torch.autograd.graph.saved_tensors_hooks(pack, unpack):
        yield
