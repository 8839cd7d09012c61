"""The modules SAMA adds to the Wan DiT and the layout of its joint token sequence (SAMA.md 1, 2).

Split from ``trainer/model.py``, which wires them into Wan's forward: these pieces know nothing
of the DiT's internals, only its width. Their top-level names are the released SAMA checkpoint's
(``NEW_MODULES``), so ``trainer/convert.py`` can load it.

Shape legend: B batch, N semantic tokens (anchors x 65), S SigLIP width (1152), D model width.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from sama.errors import ConfigError, require

require("torch", "models")

import torch  # noqa: E402
from torch import nn  # noqa: E402

# Token types of the segment (type) embedding, SAMA.md 1.
SOURCE, SEMANTIC, TARGET = 0, 1, 2
# Top-level modules added to the Wan DiT; their names are the released checkpoint's (SAMA.md 7).
NEW_MODULES = ("segment_embedding", "siglip_feat_mlp", "semantic_head")


@dataclass(frozen=True)
class SamaConfig:
    """Sizes and initialisation of the modules SAMA adds to Wan (SAMA.md 1, 2)."""

    siglip_dim: int = 1152  # width of the SigLIP so400m patch tokens
    tokens_per_anchor: int = 65  # 64 pooled local tokens + 1 global token per anchor frame
    mlp_hidden: int = 1024  # hidden width of siglip_feat_mlp
    num_types: int = 3  # source, semantic, target
    semantic_head_bias_std: float = 1e-3  # "small bias" of semantic_head.proj
    # (open) The released code keeps nn.Embedding's default N(0, 1) init; we follow it.
    segment_embedding_std: float = 1.0

    def __post_init__(self) -> None:
        for name in ("siglip_dim", "tokens_per_anchor", "mlp_hidden"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"model.{name} must be > 0, got {getattr(self, name)}")
        if self.num_types != 3:
            raise ConfigError(
                f"model.num_types must be 3 (source, semantic, target), got {self.num_types}"
            )
        for name in ("semantic_head_bias_std", "segment_embedding_std"):
            if getattr(self, name) < 0:
                raise ConfigError(f"model.{name} must be >= 0, got {getattr(self, name)}")

    @classmethod
    def from_dict(cls, data: dict) -> SamaConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown SamaConfig keys {unknown}; known keys: {sorted(known)}")
        return cls(**data)


class SiglipFeatMLP(nn.Module):
    """Projects noisy SigLIP tokens into the DiT width: LayerNorm -> fc1 -> GELU -> fc2."""

    def __init__(self, siglip_dim: int, hidden_dim: int, dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(siglip_dim, eps=1e-6)
        self.fc1 = nn.Linear(siglip_dim, hidden_dim)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_dim, dim)

    def forward(self, x_BNS: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(self.norm(x_BNS))))


class SemanticHead(nn.Module):
    """Maps the semantic tokens' final hidden states back to SigLIP width: LayerNorm -> proj."""

    def __init__(self, dim: int, siglip_dim: int, bias_std: float) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.proj = nn.Linear(dim, siglip_dim)
        nn.init.xavier_uniform_(self.proj.weight)
        nn.init.normal_(self.proj.bias, std=bias_std)

    def forward(self, hidden_BND: torch.Tensor) -> torch.Tensor:
        return self.proj(self.norm(hidden_BND.to(self.norm.weight.dtype)))


def make_new_modules(cfg: SamaConfig, dim: int, init_seed: int) -> dict[str, nn.Module]:
    """SAMA's three modules, initialised from ``init_seed`` alone (the global RNG is left as it
    was), so a model built on the meta device gets the same values from a CPU copy."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(init_seed)
        segment = nn.Embedding(cfg.num_types, dim)
        nn.init.normal_(segment.weight, std=cfg.segment_embedding_std)
        mlp = SiglipFeatMLP(cfg.siglip_dim, cfg.mlp_hidden, dim)
        head = SemanticHead(dim, cfg.siglip_dim, cfg.semantic_head_bias_std)
    return dict(zip(NEW_MODULES, (segment, mlp, head), strict=True))


def new_modules_init(cfg: SamaConfig, dim: int, init_seed: int) -> dict[str, torch.Tensor]:
    """``make_new_modules``' values under the model's names (``segment_embedding.weight``...)."""
    out = {}
    for name, module in make_new_modules(cfg, dim, init_seed).items():
        out.update({f"{name}.{k}": v for k, v in module.state_dict().items()})
    return out


@dataclass(frozen=True)
class TokenLayout:
    """Where each part sits in the joint sequence [source | semantic | target]."""

    num_source: int
    num_semantic: int
    num_target: int
    target_grid: tuple[int, int, int]  # (T, H, W) after patching

    @property
    def semantic(self) -> slice:
        return slice(self.num_source, self.num_source + self.num_semantic)

    @property
    def target(self) -> slice:
        start = self.num_source + self.num_semantic
        return slice(start, start + self.num_target)

    @property
    def source(self) -> slice:
        return slice(0, self.num_source)
