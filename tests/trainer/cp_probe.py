"""Run by ``torchrun --nproc_per_node 2`` from test_context_parallel.py (not a test itself).

Both ranks build the same tiny ``SamaTransformer`` and inputs, run SAMA's loss forward and
backward unsplit (no communication), then again with the sequence split over the two ranks
(Ulysses), with and without per-block checkpointing + activation offload, and write the
outputs, losses and (group-summed) gradients of both to ``OUT/rank{r}.pt`` for the test.
"""

from __future__ import annotations

import sys

import torch
import torch.distributed as dist
from diffusers import WanTransformer3DModel

from trainer.context_parallel import ContextParallel
from trainer.losses import sama_loss
from trainer.model import SamaTransformer
from trainer.sama_modules import SamaConfig


def model() -> SamaTransformer:
    torch.manual_seed(0)
    dit = WanTransformer3DModel(
        patch_size=(1, 2, 2),
        num_attention_heads=4,
        attention_head_dim=12,
        in_channels=4,
        out_channels=4,
        text_dim=16,
        freq_dim=32,
        ffn_dim=32,
        num_layers=2,
        rope_max_seq_len=32,
    )
    return SamaTransformer(dit, SamaConfig(siglip_dim=8, mlp_hidden=16))


def inputs() -> dict:
    g = torch.Generator().manual_seed(1)
    # 3 x 4 x 3 = 36 tokens per video: 36 source + 65 semantic + 36 target = 137, odd
    video = lambda: torch.randn(2, 4, 3, 8, 6, generator=g)  # noqa: E731
    return dict(
        target_BCTHW=video(),
        source_BCTHW=video(),
        noise_BCTHW=video(),
        text_BLD=torch.randn(2, 7, 16, generator=g),
        text_mask_BL=torch.ones(2, 7),
        t_B=torch.tensor([0.3, 0.8]),
        anchors_BNS=torch.randn(2, 65, 8, generator=g),
        semantic_noise_BNS=torch.randn(2, 65, 8, generator=g),
    )


def run(m: SamaTransformer, x: dict) -> dict:
    m.zero_grad(set_to_none=True)
    outputs = {}
    hook = m.register_forward_hook(lambda mod, args, out: outputs.update(v=out[0], s=out[1]))
    terms = sama_loss(m, **x)
    hook.remove()
    terms.total_B.sum().backward()
    grads = {n: p.grad.detach().clone() for n, p in m.named_parameters()}
    return {
        "loss": terms.total_B.detach(),
        "velocity": outputs["v"].detach(),
        "semantic": outputs["s"].detach(),
        "grads": grads,
    }


def main(out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    m, x = model(), inputs()
    result = {"unsplit": run(m, x)}
    m.enable_context_parallel(ContextParallel(dist.group.WORLD, world, rank))
    for name, checkpointing in (("cp", False), ("cp_checkpoint_offload", True)):
        if checkpointing:
            m.enable_gradient_checkpointing()
            m.activation_offload = True
        r = run(m, x)
        for g in r["grads"].values():  # each rank holds its tokens' part: sum over the group
            dist.all_reduce(g)
        result[name] = r
    result["offloaded"] = dict(m.offload_stats)
    torch.save(result, f"{out}/rank{rank}.pt")
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
