"""Validation samples as the model was trained: text padded like training, samples split over
ranks, encoders loaded for it freed afterwards."""

from __future__ import annotations

import torch

from tests.trainer.conftest import CONFIG_DIR, debug_overrides
from trainer.config import load_train_config
from trainer.distributed import init_distributed
from trainer.inputs import pad_text
from trainer.train import _make_validator, build, validate


def run_with_validation(tmp_path, tiny_models, train_root, *extra):
    cfg = load_train_config(
        CONFIG_DIR / "debug_cpu.yaml",
        debug_overrides(
            tiny_models,
            train_root,
            tmp_path,
            "validation.enabled=true",
            "validation.steps=2",
            "validation.num_samples=3",
            *extra,
        ),
    )
    run = build(cfg, init_distributed("none", "cpu"))
    return run, _make_validator(run)


def test_validation_pads_prompt_and_negative_prompt_as_training(tmp_path, tiny_models, train_root):
    run, validator = run_with_validation(tmp_path, tiny_models, train_root)
    seen = []
    hook = run.core.register_forward_pre_hook(lambda m, args: seen.append((args[2], args[5])))
    total, count = validator.run(run.core, 0, run.text, run.d.device, write=False)
    hook.remove()
    assert count == 3 and total > 0
    length = run.cfg.text_pad_tokens  # 64 in debug_cpu.yaml, 512 (Wan's) by default
    neg = run.text.embed([validator.cfg.negative_prompt])[0]
    for i, s in enumerate(validator.samples):
        cond, uncond = (seen[i * 2 * validator.cfg.steps + j] for j in (0, 1))
        want_cond = pad_text([s["text_embed"]], length)  # the training loop's own padding
        want_uncond = pad_text([neg], length)
        for (text, mask), (want_text, want_mask) in ((cond, want_cond), (uncond, want_uncond)):
            assert text.shape == (1, length, 32)
            assert torch.equal(text, want_text) and torch.equal(mask, want_mask)
    assert all(text.shape[1] == length for text, _ in seen)


def test_samples_are_split_over_ranks(tmp_path, tiny_models, train_root):
    run, validator = run_with_validation(tmp_path, tiny_models, train_root)
    ids = []
    hook = run.core.register_forward_pre_hook(lambda m, args: ids.append(args[0].sum().item()))
    counts = [
        validator.run(run.core, 0, run.text, run.d.device, False, rank=r, world=2)[1]
        for r in (0, 1)
    ]
    assert counts == [2, 1]  # samples 0, 2 and 1
    ids.clear()
    # lockstep (FSDP / context parallel): every rank runs as many samples as the busiest
    _, scored = validator.run(run.core, 0, run.text, run.d.device, False, 1, 2, lockstep=True)
    assert scored == 1 and len(ids) == 2 * 2 * validator.cfg.steps
    hook.remove()


def test_encoders_loaded_for_validation_are_freed(tmp_path, tiny_models, train_root):
    """The training shards carry text embeddings, so umT5 loads only for the negative prompt;
    it and the VAE (for the PNG strips) are gone after validation, the embedding cached."""
    run, validator = run_with_validation(tmp_path, tiny_models, train_root)
    assert run.text.encoder is None
    result = validate(run, validator)
    assert result["val_latent_mse"] > 0
    assert run.text.encoder is None and validator.vae is None
    assert validator.cfg.negative_prompt in run.text.cache
    assert len(list((tmp_path / "validation").glob("*.png"))) == 3
