"""Property tests of the latent-space pretext corruptions (SAMA.md §3).

Shapes are drawn at random from seeded generators (hypothesis is not a dependency).
Legend: C channels, T latent frames, H, W latent height/width.
"""

from __future__ import annotations

import random
from collections import Counter

import pytest
import torch

from sama.errors import ConfigError
from sama.pretext import (
    PROMPT_PREFIX,
    PretextConfig,
    PretextTask,
    all_prompts,
    apply_pretext,
    cube_inpaint,
    cube_length,
    make_pretext_sample,
    make_prompt,
    pretext_generator,
    sample_task,
    speed_up,
    tube_shuffle,
    tube_slices,
)


def random_shape(rng: random.Random, min_t: int = 2) -> tuple[int, int, int, int]:
    return rng.randint(1, 4), rng.randint(min_t, 12), rng.randint(1, 7), rng.randint(1, 7)


def distinct_latents(shape: tuple[int, ...], seed: int) -> torch.Tensor:
    """Random latents whose every frame differs from the black latent and from each other."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g) + 10.0


# --- prompts --------------------------------------------------------------------------------


def test_prompts_are_exact() -> None:
    assert PROMPT_PREFIX == {
        PretextTask.NONE: "",
        PretextTask.CUBE_INPAINTING: "[Complete the missing regions in the video.]",
        PretextTask.SPEED: "[Restore the video to normal playback speed.]",
        PretextTask.TUBE_SHUFFLE: "[Restore the correct spatio-temporal order of the video segments.]",
    }
    cap = "A dog runs on the beach."
    assert make_prompt("none", cap) == cap
    assert make_prompt(PretextTask.SPEED, cap) == (
        "[Restore the video to normal playback speed.] A dog runs on the beach."
    )
    assert make_prompt("cube_inpainting", cap) == (
        "[Complete the missing regions in the video.] A dog runs on the beach."
    )
    assert make_prompt("tube_shuffle", cap) == (
        "[Restore the correct spatio-temporal order of the video segments.] A dog runs on the beach."
    )
    assert list(all_prompts(cap).values()) == [make_prompt(t, cap) for t in PretextTask]
    with pytest.raises(ValueError):
        make_prompt("reverse", cap)


# --- config and task mix --------------------------------------------------------------------


def test_config_defaults_and_validation() -> None:
    cfg = PretextConfig().validate()
    assert [w for _, w in cfg.weights()] == [1.0, 2.0, 3.0, 4.0]
    assert cfg.cube_ratio == 0.3
    assert PretextConfig(mix={"speed": 1}).validate().weights()[2] == (PretextTask.SPEED, 1.0)
    bad = [
        {"mix": {"reverse": 1.0}},
        {"mix": {"speed": -1.0}},
        {"mix": {"speed": float("nan")}},
        {"mix": {"speed": "3"}},
        {"mix": {"speed": 0.0}},
        {"cube_ratio": 0.0},
        {"cube_ratio": 1.0},
        {"none_source": "zeros"},
        {"speed_pad": "reflect"},
    ]
    for kwargs in bad:
        with pytest.raises(ConfigError):
            PretextConfig(**kwargs).validate()


def test_mix_frequencies_match_1_2_3_4() -> None:
    cfg = PretextConfig()
    g = pretext_generator(0, "mix", 0)
    n = 20_000
    counts = Counter(sample_task(cfg, g) for _ in range(n))
    for task, weight in cfg.weights():
        # binomial sd <= 0.0035 at n=20k; 0.015 is > 4 sd
        assert abs(counts[task] / n - weight / 10.0) < 0.015, (task, counts)


def test_zero_weight_task_never_drawn() -> None:
    cfg = PretextConfig(mix={"none": 1.0, "tube_shuffle": 1.0}).validate()
    g = pretext_generator(1, "mix", 0)
    drawn = {sample_task(cfg, g) for _ in range(2000)}
    assert drawn == {PretextTask.NONE, PretextTask.TUBE_SHUFFLE}


# --- cube inpainting -----------------------------------------------------------------------


@pytest.mark.parametrize("case", range(40))
def test_cube_inpaint_properties(case: int) -> None:
    rng = random.Random(case)
    C, T, H, W = random_shape(rng)
    x = distinct_latents((C, T, H, W), case)
    per_pixel = case % 2 == 0
    black = torch.randn((C, H, W) if per_pixel else (C,))
    black_C1HW = black.reshape(C, 1, H, W) if per_pixel else black.reshape(C, 1, 1, 1)
    ratio = rng.choice([0.3, 0.1, 0.5, 0.9])
    out, info = cube_inpaint(x, black, pretext_generator(case, "cube", 0), ratio)
    k, start = info["cube_len"], info["cube_start"]
    assert k == cube_length(T, ratio) and 1 <= k <= T - 1
    assert 1 <= start <= T - k
    black_CHW = black_C1HW[:, 0].expand(C, H, W)
    is_black = [torch.equal(out[:, t], black_CHW) for t in range(T)]
    blacked = [t for t in range(T) if is_black[t]]
    assert blacked == list(range(start, start + k))  # one contiguous run of exactly k frames
    assert not is_black[0]
    for t in range(T):
        if not is_black[t]:
            assert torch.equal(out[:, t], x[:, t])  # frame 0 and the rest unchanged
    assert out.shape == x.shape and out.dtype == x.dtype


def test_cube_length_rounds_like_the_paper() -> None:
    assert cube_length(21, 0.3) == 6  # 81 px frames: 6 latent ~ 24 px = round(0.3 * 81)
    assert cube_length(2, 0.3) == 1  # clamped up to 1
    assert cube_length(5, 0.99) == 4  # clamped to T'-1: frame 0 stays


def test_cube_start_covers_every_valid_start_uniformly() -> None:
    C, T, H, W = 2, 9, 3, 3
    x = distinct_latents((C, T, H, W), 0)
    k = cube_length(T, 0.3)  # 3 -> starts 1..6
    starts = Counter(
        cube_inpaint(x, torch.zeros(C), pretext_generator(7, i, 0))[1]["cube_start"]
        for i in range(1200)
    )
    assert set(starts) == set(range(1, T - k + 1))
    assert max(starts.values()) - min(starts.values()) < 80  # ~200 each


def test_cube_rejects_bad_inputs() -> None:
    g = pretext_generator(0, "x", 0)
    with pytest.raises(ValueError, match="frames"):
        cube_inpaint(torch.zeros(4, 1, 2, 2), torch.zeros(4), g)  # an image: refused
    with pytest.raises(ValueError, match="black_latent"):
        cube_inpaint(torch.zeros(4, 5, 2, 2), torch.zeros(3), g)


# --- speed ---------------------------------------------------------------------------------


@pytest.mark.parametrize("case", range(20))
def test_speed_up_is_every_second_frame(case: int) -> None:
    C, T, H, W = random_shape(random.Random(case))
    x = distinct_latents((C, T, H, W), case)
    out = speed_up(x)
    assert torch.equal(out, x[:, ::2])
    assert out.shape[1] == (T + 1) // 2
    rep = speed_up(x, pad="repeat_last")
    assert rep.shape == x.shape and torch.equal(rep[:, : out.shape[1]], out)
    assert all(torch.equal(rep[:, t], out[:, -1]) for t in range(out.shape[1], T))
    hold = speed_up(x, pad="hold")
    assert hold.shape == x.shape
    assert all(torch.equal(hold[:, t], x[:, t - t % 2]) for t in range(T))


def test_speed_matches_pixel_token_count() -> None:
    # 81 px -> [::2] = 41 px -> 11 latent frames; latent [::2] of 21 frames -> 11.
    assert speed_up(torch.zeros(16, 21, 2, 2)).shape[1] == (41 - 1) // 4 + 1


# --- tube shuffle --------------------------------------------------------------------------


def tubes_of(x: torch.Tensor) -> list[torch.Tensor]:
    _, T, H, W = x.shape
    return [x[(slice(None), *s)] for s in tube_slices(T, H, W)]


def tube_key(t: torch.Tensor) -> tuple:
    return (tuple(t.shape), t.numpy().tobytes())


@pytest.mark.parametrize("case", range(40))
def test_tube_shuffle_properties(case: int) -> None:
    rng = random.Random(1000 + case)
    C, T, H, W = random_shape(rng)
    if case < 10:  # the real layout: T'-1, H, W even -> all 8 tubes interchangeable
        T, H, W = 2 * rng.randint(1, 5) + 1, 2 * rng.randint(1, 3), 2 * rng.randint(1, 3)
    x = distinct_latents((C, T, H, W), case)
    shapes = [tuple(t.shape) for t in tubes_of(x)]
    nonempty = [i for i, s in enumerate(shapes) if min(s[1:]) > 0]
    if not any(shapes[i] == shapes[j] for i in nonempty for j in nonempty if i < j):
        with pytest.raises(ValueError, match="shape"):
            tube_shuffle(x, pretext_generator(case, "tube", 0))
        return
    out, perm = tube_shuffle(x, pretext_generator(case, "tube", 0))
    assert out.shape == x.shape
    assert torch.equal(out[:, 0], x[:, 0])  # frame 0 untouched
    assert sorted(perm) == list(range(8))
    assert perm != list(range(8))  # the source always differs from the target
    before, after = tubes_of(x), tubes_of(out)
    assert sorted(map(tube_key, before)) == sorted(map(tube_key, after))  # multiset kept
    for slot, src in enumerate(perm):
        assert shapes[slot] == shapes[src]  # only equal-shape tubes swap
        assert torch.equal(after[slot], before[src])
    if case < 10:
        assert len(set(shapes)) == 1


def test_tube_permutation_varies_and_reaches_all_slots() -> None:
    x = distinct_latents((2, 5, 4, 4), 0)
    perms = [tuple(tube_shuffle(x, pretext_generator(3, i, 0))[1]) for i in range(200)]
    assert len(set(perms)) > 150  # 8! - 1 possibilities
    assert all({p[slot] for p in perms} == set(range(8)) for slot in range(8))


# --- apply_pretext and determinism ---------------------------------------------------------


def test_apply_pretext_each_task() -> None:
    C, T, H, W = 3, 9, 4, 6
    x = distinct_latents((C, T, H, W), 5)
    black = torch.zeros(C)
    g = pretext_generator(0, "a", 0)
    for none_source, expected in (("identity", x), ("none", None)):
        cfg = PretextConfig(none_source=none_source).validate()
        src, info = apply_pretext(x, "none", black, g, cfg)
        assert (src is None) == (expected is None)
        if src is not None:
            assert torch.equal(src, x) and src.data_ptr() != x.data_ptr()
        assert info == {"task": "none", "source_frames": 0 if src is None else T}
    cfg = PretextConfig()
    src, info = apply_pretext(x, "speed", None, g, cfg)
    assert torch.equal(src, x[:, ::2]) and info["source_frames"] == 5
    src, info = apply_pretext(x, "cube_inpainting", black, g, cfg)
    assert info["cube_len"] == 3 and src.shape == x.shape
    src, info = apply_pretext(x, "tube_shuffle", None, g, cfg)
    assert sorted(info["perm"]) == list(range(8))
    with pytest.raises(ValueError, match="black"):
        apply_pretext(x, "cube_inpainting", None, g, cfg)
    with pytest.raises(ValueError, match="frames"):
        apply_pretext(x[:, :1], "tube_shuffle", None, g, cfg)


def test_same_triple_same_corruption_other_epoch_differs() -> None:
    x = distinct_latents((2, 9, 4, 4), 1)
    black = torch.zeros(2)
    cfg = PretextConfig()
    differs = 0
    for sid in range(30):
        a = make_pretext_sample(x, "cap", black, cfg, 11, f"clip-{sid}", 0)
        b = make_pretext_sample(x, "cap", black, cfg, 11, f"clip-{sid}", 0)
        c = make_pretext_sample(x, "cap", black, cfg, 11, f"clip-{sid}", 1)
        assert a[1:] == b[1:]
        assert (a[0] is None and b[0] is None) or torch.equal(a[0], b[0])
        assert a[1] == make_prompt(a[2]["task"], "cap")
        same = a[1:] == c[1:] and (a[0] is None) == (c[0] is None)
        same = same and (a[0] is None or torch.equal(a[0], c[0]))
        differs += not same
    assert differs >= 15  # most epochs re-draw a different corruption


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_latents_match_cpu() -> None:
    # The generator stays on CPU; the latents may live on the GPU. Same draws, same result.
    x = distinct_latents((3, 9, 4, 6), 2)
    black = torch.randn(3)
    cfg = PretextConfig()
    for task in PretextTask:
        cpu, info_cpu = apply_pretext(x, task, black, pretext_generator(0, "d", 0), cfg)
        gpu, info_gpu = apply_pretext(x.cuda(), task, black, pretext_generator(0, "d", 0), cfg)
        assert info_cpu == info_gpu
        assert gpu.device.type == "cuda" and torch.equal(gpu.cpu(), cpu)
