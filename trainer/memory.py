"""Peak GPU memory per rank, from configs alone: the model behind ``--plan``.

At SAMA's settings (SAMA.md 1: Wan2.1-T2V-14B, 81 frames at 480x832) one video sample is
32,760 target + 32,760 source + 65 semantic = 65,585 tokens, and what decides whether a step
fits is arithmetic that needs no GPU:

- **states** (sharded over the FSDP ranks): fp32 parameters, fp32 gradients, AdamW's two
  moments, the fp32 EMA: 20 bytes per parameter (DDP/none: every rank holds all of it, plus
  DDP's gradient buckets and autocast's bf16 weight copies);
- **FSDP working set**: two unsharded blocks (the one running and the prefetched one), one
  block's unsharded gradients before the reduce-scatter, the root module's unsharded
  parameters and gradients;
- **activations**: with per-block checkpointing, every block's input (``tokens x dim``) stays
  saved (on the host with ``activation_offload``, trainer/offload.py), and one block at a time
  is recomputed, which saves ``(52 + 8a) D + 2a F + 36 + 8 heads`` bytes per token (``a`` =
  activation bytes, D the width, F the MLP width). Those coefficients were measured from the
  tensors a diffusers ``WanTransformerBlock`` saves for backward (``saved_tensors_hooks``,
  bf16 and fp32 weights); tests/trainer/test_plan.py re-measures them. The backward of that
  block needs about two more MLP-wide gradients per token. Context parallelism divides every
  per-token term by its group size; the output head runs on the target tokens (or, under CP,
  on every local token).
- **reserve**: CUDA context, NCCL buffers, allocator fragmentation (``plan.reserve_gb``).

Figures are bytes here and GiB where printed (what ``torch.cuda`` reports);
``bench/gpu_check.py`` prints the estimate beside ``torch.cuda.max_memory_allocated``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

GIB = 1024**3
ADAMW_MOMENTS = 2
VAE_TIME, VAE_SPACE = 4, 8  # Wan VAE strides (SAMA.md 1)


@dataclass(frozen=True)
class DiTDims:
    """Parameter counts and widths of the DiT + SAMA modules (from a meta-device build)."""

    num_layers: int
    dim: int
    ffn_dim: int
    heads: int
    patch: tuple[int, int, int]
    block_params: int
    root_params: int  # everything outside the blocks, SAMA's modules included

    @property
    def total_params(self) -> int:
        return self.num_layers * self.block_params + self.root_params


def dit_dims(dit_config: dict, siglip_dim: int = 1152, mlp_hidden: int = 1024) -> DiTDims:
    """Count parameters by building the model on the meta device (no memory, exact)."""
    import torch
    from diffusers import WanTransformer3DModel

    from trainer.sama_modules import SamaConfig, SemanticHead, SiglipFeatMLP

    known = {k: v for k, v in dit_config.items() if not k.startswith("_")}
    with torch.device("meta"):
        dit = WanTransformer3DModel(**known)
        dim = dit.config.num_attention_heads * dit.config.attention_head_dim
        extra = [
            torch.nn.Embedding(SamaConfig().num_types, dim),
            SiglipFeatMLP(siglip_dim, mlp_hidden, dim),
            SemanticHead(dim, siglip_dim, 0.0),
        ]
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    block = count(dit.blocks[0])
    root = count(dit) - block * len(dit.blocks) + sum(count(m) for m in extra)
    return DiTDims(
        num_layers=len(dit.blocks),
        dim=dim,
        ffn_dim=dit.config.ffn_dim,
        heads=dit.config.num_attention_heads,
        patch=tuple(dit.config.patch_size),
        block_params=block,
        root_params=root,
    )


@dataclass(frozen=True)
class Sample:
    """One micro-batch shape: samples and tokens per sample (target part separately)."""

    kind: str  # "video" | "image"
    batch: int
    tokens: int  # per sample: source + semantic + target
    target_tokens: int


def latent_tokens(frames: int, height: int, width: int, patch: tuple[int, int, int]) -> int:
    """DiT tokens of one video (SAMA.md 1 frame rule, VAE 4x/8x, patch 1x2x2)."""
    t = (frames - 1) // VAE_TIME + 1
    return (t // patch[0]) * (height // VAE_SPACE // patch[1]) * (width // VAE_SPACE // patch[2])


@dataclass(frozen=True)
class Setup:
    """Everything the estimate depends on besides the model."""

    world_size: int
    mode: str  # "none" | "ddp" | "fsdp"
    bf16: bool
    checkpointing: bool
    offload: bool
    context_parallel: int
    samples: tuple[Sample, ...]
    reserve_gb: float


@dataclass
class Estimate:
    """Bytes per rank by item (insertion order = print order); the peak micro-batch kind."""

    items: dict[str, float] = field(default_factory=dict)
    host: dict[str, float] = field(default_factory=dict)
    peak_kind: str = ""

    @property
    def total(self) -> float:
        return sum(self.items.values())


def state_bytes(dims: DiTDims, s: Setup) -> dict[str, float]:
    p = dims.total_params
    if s.mode == "fsdp":
        shard = s.world_size
        out = {
            "parameters (fp32 master)": 4 * p / shard,
            "gradients (fp32)": 4 * p / shard,
            "optimizer (AdamW moments)": 4 * ADAMW_MOMENTS * p / shard,
            "EMA (fp32)": 4 * p / shard,
        }
        a = 2 if s.bf16 else 4
        out["FSDP unsharded blocks + grads"] = (2 * a + a + 4) * dims.block_params
        out["FSDP unsharded root + grads"] = (a + a + 4) * dims.root_params
        return out
    out = {
        "parameters (fp32 master)": 4 * p,
        "gradients (fp32)": 4 * p,
        "optimizer (AdamW moments)": 4 * ADAMW_MOMENTS * p,
        "EMA (fp32)": 4 * p,
    }
    if s.mode == "ddp":
        out["DDP gradient buckets"] = 4 * p
    if s.bf16:
        out["autocast bf16 weight copies"] = 2 * p
    return out


def block_token_bytes(dims: DiTDims, act_bytes: int) -> float:
    """Bytes one Wan block saves for backward per token (measured form, module docstring)."""
    return (52 + 8 * act_bytes) * dims.dim + 2 * act_bytes * dims.ffn_dim + 36 + 8 * dims.heads


def activation_bytes(dims: DiTDims, s: Setup, sample: Sample) -> dict[str, float]:
    a = 2 if s.bf16 else 4
    cp = s.context_parallel
    tokens = sample.batch * -(-sample.tokens // cp)  # per rank: the local share, padded
    block = tokens * block_token_bytes(dims, a)
    transient = tokens * 2 * (a * dims.ffn_dim + 4 * dims.dim)
    head_tokens = tokens if cp > 1 else sample.batch * sample.target_tokens
    out: dict[str, float] = {}
    if s.checkpointing:
        inputs = dims.num_layers * tokens * dims.dim * a
        out["saved block inputs"] = 2 * tokens * dims.dim * a if s.offload else inputs
        out["one block recomputed"] = block
    else:
        out["every block's saved tensors"] = dims.num_layers * block
    out["block backward transient"] = transient
    out["output head"] = head_tokens * (8 + 2 * a) * dims.dim
    return out


def estimate(dims: DiTDims, s: Setup) -> Estimate:
    """Peak bytes per rank: states + working set + the worst micro-batch's activations."""
    est = Estimate(items=state_bytes(dims, s))
    worst: dict[str, float] = {}
    for sample in s.samples:
        acts = activation_bytes(dims, s, sample)
        if sum(acts.values()) > sum(worst.values()):
            worst, est.peak_kind = acts, sample.kind
    est.items.update({f"activations: {k}": v for k, v in worst.items()})
    est.items["reserve (context, NCCL, fragmentation)"] = s.reserve_gb * GIB
    if s.offload and s.checkpointing:
        video = max(s.samples, key=lambda x: x.batch * x.tokens)
        tokens = video.batch * -(-video.tokens // s.context_parallel)
        est.host["offloaded block inputs (pinned)"] = dims.num_layers * tokens * dims.dim * 2
    return est
