"""``python -m bench.gpu_check``: what a SAMA run asks of one GPU, measured on it.

Nothing is downloaded: every model is built from its published config with random weights.

- (a) the full-size Wan2.1 VAE (``AutoencoderKLWan()``'s defaults are Wan2.1's) encoding one
  81x480x832 clip (SAMA.md 1), fp32 as the build runs it;
- (b) the SigLIP so400m vision tower (patch 14, 384 px) on a batch of 16 anchor frames;
- (c) forward + backward at 65,585 tokens (32,760 target + 32,760 source + 65 semantic) in bf16
  with per-block checkpointing: the whole DiT at the Wan2.1-1.3B config, and one block of the
  14B config. Beside the measured ``torch.cuda.max_memory_allocated`` is the ``--plan``
  estimate of the same thing (trainer/plan.py: bf16 weights and gradients, activations; no
  optimizer), so the estimate can be checked against a real GPU.

Prints one table. Without CUDA it prints one line saying so and exits 0. ``--smoke`` runs the
same code on the CPU at toy sizes (tests use it; its figures mean nothing).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

GIB = 1024**3
SIGLIP_SO400M = dict(
    hidden_size=1152,
    intermediate_size=4304,
    num_hidden_layers=27,
    num_attention_heads=16,
    image_size=384,
    patch_size=14,
)


@dataclass(frozen=True)
class Sizes:
    frames: int = 81
    height: int = 480
    width: int = 832
    anchors: int = 16
    siglip: dict | None = None
    dit_small: str = "Wan-AI/Wan2.1-T2V-1.3B-Diffusers"
    dit_large: str = "Wan-AI/Wan2.1-T2V-14B-Diffusers"
    toy: bool = False


def toy_sizes() -> Sizes:
    siglip = dict(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        image_size=28,
        patch_size=14,
    )
    return Sizes(frames=5, height=32, width=48, anchors=2, siglip=siglip, toy=True)


def measure(device, fn: Callable[[], None]) -> tuple[float, float | None]:
    """Seconds of ``fn()`` (after one warm-up call) and its peak allocated GiB on CUDA."""
    import torch

    cuda = device.type == "cuda"
    fn()
    if cuda:
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    t0 = time.perf_counter()
    fn()
    if cuda:
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - t0
    return seconds, (torch.cuda.max_memory_allocated(device) / GIB if cuda else None)


def vae_row(device, s: Sizes) -> tuple[str, float, float | None, float | None]:
    import torch
    from diffusers import AutoencoderKLWan

    vae = AutoencoderKLWan(**({"base_dim": 8} if s.toy else {})).to(device).eval()
    clip = torch.rand(1, 3, s.frames, s.height, s.width, device=device) * 2 - 1

    def run():
        with torch.no_grad():
            vae.encode(clip)

    sec, peak = measure(device, run)
    return (f"Wan VAE encode {s.frames}x{s.height}x{s.width} (fp32)", sec, peak, None)


def siglip_row(device, s: Sizes) -> tuple[str, float, float | None, float | None]:
    import torch
    from transformers import SiglipVisionConfig, SiglipVisionModel

    cfg = SiglipVisionConfig(**(s.siglip or SIGLIP_SO400M))
    model = SiglipVisionModel(cfg).to(device).eval()
    pixels = torch.randn(s.anchors, 3, cfg.image_size, cfg.image_size, device=device)

    def run():
        with torch.no_grad():
            model(pixel_values=pixels)

    sec, peak = measure(device, run)
    return (f"SigLIP vision tower, {s.anchors} anchors (fp32)", sec, peak, None)


def dit_config(model_id: str, toy: bool) -> dict:
    from trainer.plan import KNOWN_DIT_CONFIGS, WAN_COMMON

    cfg = {**WAN_COMMON, **KNOWN_DIT_CONFIGS[model_id]}
    if toy:
        cfg.update(
            num_attention_heads=2, attention_head_dim=12, ffn_dim=32, num_layers=2, text_dim=16
        )
    return cfg


def random_model(config: dict, device, siglip_dim: int):
    """A ``SamaTransformer`` of ``config`` built on the meta device with random bf16 weights
    (parameters only, as FSDP's mixed precision does: the RoPE tables keep their dtype)."""
    import torch

    from trainer.sama_modules import SamaConfig
    from trainer.weights import materialize, meta_model

    model = meta_model(config, SamaConfig(siglip_dim=siglip_dim))
    materialize(model, device)
    with torch.no_grad():
        for p in model.parameters():
            p.data = torch.randn(p.shape, device=device, dtype=torch.bfloat16) * 0.02
    return model


def sample_inputs(model, s: Sizes, device, siglip_dim: int) -> dict:
    import torch

    t = (s.frames - 1) // 4 + 1
    shape = (1, 16, t, s.height // 8, s.width // 8)
    bf = dict(device=device, dtype=torch.bfloat16)
    text_dim = model.dit.config.text_dim
    return dict(
        noisy_target_BCTHW=torch.randn(shape, **bf),
        timestep_B=torch.full((1,), 500.0, device=device),
        encoder_hidden_states_BLD=torch.randn(1, 512, text_dim, **bf),
        source_BCTHW=torch.randn(shape, **bf),
        semantic_noisy_BNS=torch.randn(1, 65, siglip_dim, **bf),
    )


def plan_bytes(config: dict, s: Sizes, siglip_dim: int, layers: int | None = None) -> float:
    """The plan's estimate of this check: bf16 weights + gradients + activations."""
    from trainer.memory import Sample, Setup, activation_bytes, dit_dims, latent_tokens

    dims = dit_dims(config, siglip_dim)
    if layers is not None:
        dims = replace(dims, num_layers=layers, root_params=0)
    target = latent_tokens(s.frames, s.height, s.width, dims.patch)
    sample = Sample("video", 1, 2 * target + 65, target)
    setup = Setup(1, "none", True, True, False, 1, (sample,), 0.0)
    acts = activation_bytes(dims, setup, sample)
    if layers is not None:
        acts.pop("output head")
    return 4 * dims.total_params + sum(acts.values())


def dit_row(device, s: Sizes) -> tuple[str, float, float | None, float | None]:
    config, siglip = dit_config(s.dit_small, s.toy), (32 if s.toy else 1152)
    model = random_model(config, device, siglip)
    model.enable_gradient_checkpointing()
    x = sample_inputs(model, s, device, siglip)

    def run():
        velocity, semantic = model(**x)
        (velocity.float().square().mean() + semantic.float().abs().mean()).backward()
        model.zero_grad(set_to_none=False)

    tokens = model.embed_tokens(
        x["noisy_target_BCTHW"], x["source_BCTHW"], x["semantic_noisy_BNS"]
    )[1]
    n = tokens.num_source + tokens.num_semantic + tokens.num_target
    sec, peak = measure(device, run)
    est = plan_bytes(config, s, siglip) / GIB
    return (f"DiT {s.dit_small.split('/')[-1]} fwd+bwd, {n:,} tokens", sec, peak, est)


def block_row(device, s: Sizes) -> tuple[str, float, float | None, float | None]:
    import torch
    from torch.utils.checkpoint import checkpoint

    config, siglip = dit_config(s.dit_large, s.toy), (32 if s.toy else 1152)
    model = random_model({**config, "num_layers": 1}, device, siglip)
    x = sample_inputs(model, s, device, siglip)
    with torch.no_grad():
        hidden, layout = model.embed_tokens(
            x["noisy_target_BCTHW"], x["source_BCTHW"], x["semantic_noisy_BNS"]
        )
        rotary = model.rotary_tables(x["noisy_target_BCTHW"], x["source_BCTHW"], 65)
        temb, tproj, text, _ = model.dit.condition_embedder(
            x["timestep_B"], x["encoder_hidden_states_BLD"]
        )
    hidden = hidden.detach().requires_grad_()
    tproj = tproj.unflatten(1, (6, -1)).detach().requires_grad_()
    block = model.dit.blocks[0]

    def run():
        out = checkpoint(block, hidden, text, tproj, rotary, use_reentrant=False)
        out.float().square().mean().backward()
        block.zero_grad(set_to_none=False)
        hidden.grad = tproj.grad = None

    sec, peak = measure(device, run)
    est = plan_bytes(config, s, siglip, layers=1) / GIB
    n = hidden.shape[1]
    return (f"one 14B block fwd+bwd (checkpointed), {n:,} tokens", sec, peak, est)


def table(rows) -> str:
    head = f"{'check':<58} {'seconds':>8} {'peak GiB':>9} {'plan GiB':>9}"
    lines = [head, "-" * len(head)]
    fmt = lambda v: "n/a" if v is None else f"{v:.2f}"  # noqa: E731
    for name, sec, peak, est in rows:
        lines.append(f"{name:<58} {sec:>8.2f} {fmt(peak):>9} {fmt(est):>9}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m bench.gpu_check", description=__doc__.split("\n")[0]
    )
    p.add_argument("--smoke", action="store_true", help="toy sizes on the CPU (code-path check)")
    args, _ = p.parse_known_args(argv)  # `python -m bench NAME` leaves NAME in argv
    import torch

    if not args.smoke and not torch.cuda.is_available():
        print("gpu_check: skipped: no CUDA device visible (nothing measured)")
        return 0
    device = torch.device("cpu") if args.smoke else torch.device("cuda")
    sizes = toy_sizes() if args.smoke else Sizes()
    rows = [f(device, sizes) for f in (vae_row, siglip_row, dit_row, block_row)]
    print(table(rows))
    return 0


if __name__ == "__main__":
    code = main()
    if code:
        raise SystemExit(code)
