"""Exponential moving average of the trained weights (SAMA.md 4: decay 0.9998, every step).

The shadow copy is float32 whatever the training precision, so 1 - 0.9998 = 2e-4 increments are
not lost to bf16 rounding. It is kept on the parameters' device and updated with one fused
``torch._foreach_lerp_``. Under FSDP the parameters are sharded DTensors and so is the shadow:
each rank averages its own shard.
"""

from __future__ import annotations

import torch
from torch import nn


class EMA:
    """``shadow = decay * shadow + (1 - decay) * param`` for every trainable parameter."""

    def __init__(self, model: nn.Module, decay: float = 0.9998) -> None:
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA decay must be in [0, 1), got {decay}")
        self.decay = decay
        self.names = [n for n, p in model.named_parameters() if p.requires_grad]
        params = dict(model.named_parameters())
        self.shadow = [params[n].detach().float().clone() for n in self.names]
        self.num_updates = 0

    def _params(self, model: nn.Module) -> list[torch.Tensor]:
        params = dict(model.named_parameters())
        missing = [n for n in self.names if n not in params]
        if missing:
            raise KeyError(f"EMA: the model has no parameters {missing[:5]}")
        return [params[n] for n in self.names]

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        current = [p.detach().float() for p in self._params(model)]
        torch._foreach_lerp_(self.shadow, current, 1.0 - self.decay)
        self.num_updates += 1

    @torch.no_grad()
    def copy_to(self, model: nn.Module) -> None:
        """Load the averaged weights into ``model`` (cast to each parameter's dtype)."""
        for p, s in zip(self._params(model), self.shadow, strict=True):
            p.copy_(s.to(p.dtype))

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Parameter name -> float32 shadow tensor (what the checkpoint stores)."""
        return dict(zip(self.names, self.shadow, strict=True))

    def load_state_dict(self, state: dict[str, torch.Tensor], num_updates: int = 0) -> None:
        missing = [n for n in self.names if n not in state]
        extra = sorted(set(state) - set(self.names))
        if missing or extra:
            raise KeyError(f"EMA state: missing {missing[:5]}, unexpected {extra[:5]}")
        with torch.no_grad():
            for s, n in zip(self.shadow, self.names, strict=True):
                s.copy_(state[n].to(s.dtype))
        self.num_updates = num_updates
