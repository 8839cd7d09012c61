"""Gradient accumulation to the paper's global batch, the per-step image:video loss share."""

from __future__ import annotations

import pytest
import torch

from sama.errors import ConfigError
from tests.trainer.conftest import CONFIG_DIR, debug_overrides
from trainer import train as train_mod
from trainer.batching import interleave
from trainer.config import load_train_config
from trainer.distributed import init_distributed
from trainer.inputs import group_by_source, pad_text
from trainer.losses import sama_loss
from trainer.step import forward_backward, is_video, step_layout
from trainer.train import build

STAGE0 = CONFIG_DIR / "stage0.yaml"


def paper(*extra):
    return load_train_config(STAGE0, list(extra), require_data=False)


@pytest.mark.parametrize(("world", "accum"), [(56, 3), (8, 21), (1, 168), (24, 7)])
def test_paper_batch_on_many_gpu_counts(world, accum):
    layout = step_layout(paper(), world)
    assert layout.accum == accum and layout.video_ratio == pytest.approx(112 / 168)


def test_every_optimizer_step_holds_the_paper_mix():
    """With the loader's interleave on each of 8 ranks, every step of 21 micro-batches per
    rank has exactly 112 video micro-batches (and 56 image ones) over the ranks."""
    layout = step_layout(paper(), 8)
    seqs = [interleave(["i"] * 500, ["v"] * 500, layout.video_ratio, r, 8) for r in range(8)]
    for step in range(10):
        window = slice(step * layout.accum, (step + 1) * layout.accum)
        assert sum(seq[window].count("v") for seq in seqs) == 112


def test_layouts_that_do_not_split_say_what_would():
    with pytest.raises(ConfigError, match="do not split over 16.*data.image_batch_size=14"):
        step_layout(paper(), 16)
    with pytest.raises(ConfigError, match="whole numbers of micro-batches"):
        step_layout(paper("data.image_batch_size=5"), 8)


def test_accumulated_gradient_is_the_weighted_objective(tmp_path, tiny_models, train_root):
    """One image and one video micro-batch in a step: each image sample weighs (1 - v) / n_img,
    each video sample v / n_vid (v = video_loss_share)."""
    cfg = load_train_config(
        CONFIG_DIR / "debug_cpu.yaml",
        debug_overrides(
            tiny_models,
            train_root,
            tmp_path,
            "optim.global_images=4",
            "optim.global_videos=2",
            "video_loss_share=0.3",
            "data.num_workers=0",
        ),
    )
    run = build(cfg, init_distributed("none", "cpu"))
    assert run.layout.accum == 2
    it = iter(run.loader)
    batches = [next(it), next(it)]
    assert sorted(is_video(b) for b in batches) == [False, True]
    sums = forward_backward(run, batches)
    grads = {n: p.grad.clone() for n, p in run.core.named_parameters()}
    run.core.zero_grad()
    manual = torch.zeros(())
    for b in batches:
        share = 0.3 if is_video(b) else 0.7
        for g in group_by_source(b):
            text, mask = pad_text(g.text, cfg.text_pad_tokens)
            terms = sama_loss(
                run.core,
                g.target_BCTHW,
                text,
                mask,
                g.t_B,
                g.noise_BCTHW,
                g.source_BCTHW,
                g.anchors_BNS,
                g.semantic_noise_BNS,
            )
            loss = terms.total_B.sum() * share / len(b["rng_id"])
            loss.backward()
            manual += loss.detach()
    assert float(sums["loss"]) == pytest.approx(float(manual), rel=1e-6)
    for name, p in run.core.named_parameters():
        assert torch.allclose(p.grad, grads[name], atol=1e-6, rtol=1e-4), name


def test_accumulated_run_resumes_exactly(tmp_path, tiny_models, train_root):
    extra = ("optim.global_images=4", "optim.global_videos=2", "log_every=1", "ckpt_every=2")
    cfg = lambda out, steps: load_train_config(  # noqa: E731
        CONFIG_DIR / "debug_cpu.yaml",
        debug_overrides(tiny_models, train_root, out, f"steps={steps}", *extra),
    )
    ref = train_mod.train(cfg(tmp_path / "ref", 4))["history"]
    train_mod.train(cfg(tmp_path / "run", 2))
    resumed = train_mod.train(cfg(tmp_path / "run", 4))["history"]
    assert [r["loss"] for r in resumed] == [r["loss"] for r in ref[2:]]
    assert all(r["samples_per_s"] > 0 for r in ref)
