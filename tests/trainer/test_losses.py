"""Flow-matching + semantic loss (SAMA.md 1, 2) on the tiny SamaTransformer.

Legend: B batch, C latent channels, T/H/W latent frames/height/width, N semantic tokens,
S SigLIP width, L text tokens, D text width.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from trainer.losses import (
    FlowConfig,
    add_noise,
    loss_weight,
    sama_loss,
    sample_noise,
    sample_timestep,
    semantic_velocity,
    shift_timesteps,
)
from trainer.model import SamaTransformer
from trainer.sama_modules import SamaConfig

S = 32  # tiny SigLIP width


@pytest.fixture(scope="module")
def model(tiny_models) -> SamaTransformer:
    return SamaTransformer.from_pretrained_dit(
        f"{tiny_models}/wan", config=SamaConfig(siglip_dim=S, mlp_hidden=16)
    )


def batch(seed: int = 0, B: int = 2) -> dict:
    g = torch.Generator().manual_seed(seed)
    return dict(
        target_BCTHW=torch.randn(B, 16, 3, 4, 6, generator=g),
        source_BCTHW=torch.randn(B, 16, 3, 4, 6, generator=g),
        anchors_BNS=torch.randn(B, 65, S, generator=g),
        noise_BCTHW=torch.randn(B, 16, 3, 4, 6, generator=g),
        semantic_noise_BNS=torch.randn(B, 65, S, generator=g),
        text_BLD=torch.randn(B, 7, 32, generator=g),
        t_B=torch.tensor([0.25, 0.8])[:B],
    )


def test_interpolation_endpoints_and_shift():
    clean, noise = torch.randn(2, 3, 4), torch.randn(2, 3, 4)
    assert torch.equal(add_noise(clean, noise, torch.zeros(2)), clean)
    assert torch.equal(add_noise(clean, noise, torch.ones(2)), noise)
    mixed = add_noise(clean, noise, torch.tensor([0.5, 0.25]))
    assert torch.allclose(mixed[1], 0.75 * clean[1] + 0.25 * noise[1])
    t = torch.linspace(0, 1, 11, dtype=torch.float64)
    assert torch.equal(shift_timesteps(t, 1.0), t)
    shifted = shift_timesteps(t, 5.0)
    assert shifted[0] == 0 and shifted[-1] == 1 and (shifted.diff() > 0).all()
    assert shift_timesteps(torch.tensor(0.5), 5.0).item() == pytest.approx(5 / 6)


@pytest.mark.parametrize("sampling", ["uniform", "logit_normal"])
def test_timestep_distribution(sampling):
    g = torch.Generator().manual_seed(0)
    plain = [sample_timestep(FlowConfig(sampling=sampling, shift=1.0), g) for _ in range(4000)]
    shifted = [sample_timestep(FlowConfig(sampling=sampling, shift=5.0), g) for _ in range(4000)]
    assert all(0.0 <= t <= 1.0 for t in plain + shifted)
    assert sum(plain) / len(plain) == pytest.approx(0.5, abs=0.02)
    # shift 5 moves the median from 0.5 to 5/6: training sees mostly high noise, as Wan's
    assert sorted(shifted)[2000] == pytest.approx(5 / 6, abs=0.03)


def test_sample_noise_is_a_function_of_seed_sample_and_epoch():
    cfg = FlowConfig()
    a = sample_noise(cfg, 0, "clip-1", 0, (16, 3, 4, 6), (65, S))
    b = sample_noise(cfg, 0, "clip-1", 0, (16, 3, 4, 6), (65, S))
    c = sample_noise(cfg, 0, "clip-1", 1, (16, 3, 4, 6), (65, S))
    d = sample_noise(cfg, 0, "clip-2", 0, (16, 3, 4, 6), (65, S))
    assert a.t == b.t and torch.equal(a.latent_CTHW, b.latent_CTHW)
    assert torch.equal(a.semantic_NS, b.semantic_NS)
    assert a.t != c.t and not torch.equal(a.latent_CTHW, d.latent_CTHW)


@pytest.mark.parametrize("sem_target", ["velocity", "clean"])
def test_loss_matches_its_definition(model, sem_target):
    """L_FM = MSE(v, noise - x0) on the target; semantic tokens noised with the SAME t;
    L = L_FM + 0.1 * L1(head, target) with target noise - anchors (velocity) or anchors."""
    x = batch()
    seen = {}
    hook = model.siglip_feat_mlp.register_forward_pre_hook(lambda m, a: seen.setdefault("in", a[0]))
    with torch.no_grad():
        terms = sama_loss(
            model,
            x["target_BCTHW"],
            x["text_BLD"],
            None,
            x["t_B"],
            x["noise_BCTHW"],
            x["source_BCTHW"],
            x["anchors_BNS"],
            x["semantic_noise_BNS"],
            0.1,
            sem_target,
        )
        t = x["t_B"].view(-1, 1, 1)
        sem_in = (1 - t) * x["anchors_BNS"] + t * x["semantic_noise_BNS"]
        noisy = add_noise(x["target_BCTHW"], x["noise_BCTHW"], x["t_B"])
        v, sem = model(noisy, x["t_B"] * 1000, x["text_BLD"], x["source_BCTHW"], sem_in)
    hook.remove()
    assert torch.allclose(seen["in"], sem_in)
    fm = (v - (x["noise_BCTHW"] - x["target_BCTHW"])).pow(2).flatten(1).mean(1)
    goal = (
        x["semantic_noise_BNS"] - x["anchors_BNS"] if sem_target == "velocity" else x["anchors_BNS"]
    )
    l1 = (sem - goal).abs().flatten(1).mean(1)
    assert torch.allclose(terms.fm_B, fm) and torch.allclose(terms.sem_B, l1)
    assert torch.allclose(terms.total_B, fm + 0.1 * l1)
    assert terms.fm_B.shape == (2,)


def test_gradients_reach_every_trainable_module(model):
    x = batch(1)
    model.zero_grad()
    terms = sama_loss(
        model,
        x["target_BCTHW"],
        x["text_BLD"],
        None,
        x["t_B"],
        x["noise_BCTHW"],
        x["source_BCTHW"],
        x["anchors_BNS"],
        x["semantic_noise_BNS"],
    )
    terms.total_B.mean().backward()
    for name in (
        "segment_embedding.weight",
        "siglip_feat_mlp.fc1.weight",
        "semantic_head.proj.weight",
        "dit.proj_out.weight",
        "dit.blocks.0.attn1.to_q.weight",
    ):
        grad = dict(model.named_parameters())[name].grad
        assert grad is not None and grad.abs().sum() > 0, name


def test_clean_head_converts_to_a_velocity():
    anchors, noise = torch.randn(2, 65, S), torch.randn(2, 65, S)
    t = torch.tensor([0.3, 0.9])
    noisy = add_noise(anchors, noise, t)
    v = semantic_velocity(anchors, noisy, t, "clean")  # a perfect clean prediction
    assert torch.allclose(v, noise - anchors, atol=1e-5)
    assert semantic_velocity(v, noisy, t, "velocity") is v


def _diffsynth_reference(shift: float) -> tuple[np.ndarray, np.ndarray]:
    """DiffSynth-Studio's FlowMatchScheduler("Wan").set_timesteps(1000, training=True), written
    out again here from its formula (diffsynth/diffusion/flow_match.py), in float64."""
    sigmas = np.linspace(1.0, 0.0, 1001)[:-1]
    sigmas = shift * sigmas / (1 + (shift - 1) * sigmas)
    x = sigmas * 1000
    y = np.exp(-2 * ((x - 500) / 1000) ** 2)
    y_shifted = y - y.min()
    return sigmas, y_shifted * (1000 / y_shifted.sum())


@pytest.mark.parametrize("shift", [5.0, 3.0])
def test_diffsynth_weighting_matches_its_training_weight_on_its_grid(shift):
    sigmas, weights = _diffsynth_reference(shift)
    cfg = FlowConfig(shift=shift, loss_weighting="diffsynth")
    got = loss_weight(cfg, torch.tensor(sigmas, dtype=torch.float64))
    # DiffSynth computes in float32: the same weights to float32 rounding (max ~1.9)
    np.testing.assert_allclose(got.numpy(), weights, rtol=1e-5, atol=1e-6)
    # between grid points: the nearest one, as training_weight's argmin does
    mid = torch.tensor([(sigmas[10] + 0.4 * (sigmas[11] - sigmas[10]))])
    assert loss_weight(cfg, mid).item() == pytest.approx(weights[10], rel=1e-5, abs=1e-6)
    assert torch.equal(loss_weight(FlowConfig(), torch.rand(4)), torch.ones(4))


def test_diffsynth_weights_at_the_figures_quoted_for_shift_5():
    cfg = FlowConfig(loss_weighting="diffsynth")
    w = loss_weight(cfg, torch.tensor([0.36, 0.99]))
    assert w[0].item() == pytest.approx(1.9, abs=0.05) and w[1].item() == pytest.approx(
        0.07, abs=0.01
    )


def test_weighting_scales_the_total_only(model):
    x = batch()
    weight = torch.tensor([2.0, 0.5])
    with torch.no_grad():
        plain = sama_loss(model, **x, text_mask_BL=None)
        weighted = sama_loss(model, **x, text_mask_BL=None, weight_B=weight)
    assert torch.equal(weighted.fm_B, plain.fm_B) and torch.equal(weighted.sem_B, plain.sem_B)
    torch.testing.assert_close(weighted.total_B, plain.total_B * weight)
