"""Explicit randomness (CONVENTIONS.md rule 6).

Every sampler and corruption takes a generator derived from ``(seed, sample_id, epoch)``;
there is no global RNG. The derivation is a stable hash, so the same triple gives the same
stream on every machine, process and Python version.
"""

from __future__ import annotations

import hashlib

import numpy as np


def derive_seed(seed: int, *keys: object) -> int:
    """A 63-bit seed from ``seed`` and any keys (sample id, epoch, purpose...), stable across runs."""
    h = hashlib.blake2b(digest_size=8)
    h.update(str(int(seed)).encode())
    for k in keys:
        h.update(b"\x1f")
        h.update(str(k).encode())
    return int.from_bytes(h.digest(), "little") & ((1 << 63) - 1)


def numpy_generator(seed: int, sample_id: object = "", epoch: int = 0, *extra: object) -> np.random.Generator:
    """A numpy Generator for ``(seed, sample_id, epoch)``."""
    return np.random.default_rng(derive_seed(seed, sample_id, epoch, *extra))


def torch_generator(seed: int, sample_id: object = "", epoch: int = 0, *extra: object, device: str = "cpu"):
    """A torch.Generator for ``(seed, sample_id, epoch)`` (imports torch lazily)."""
    import torch

    g = torch.Generator(device=device)
    g.manual_seed(derive_seed(seed, sample_id, epoch, *extra))
    return g
