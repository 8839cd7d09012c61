"""Encoders through their real loading code, on tiny random-weight models saved with
``save_pretrained`` (``sama.encoders.tiny``) and loaded back offline."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from huggingface_hub import constants as hub_constants

from sama.encoders import (
    SiglipAnchorEncoder,
    SiglipConfig,
    TextEncoderConfig,
    UMT5TextEncoder,
    VAEConfig,
    WanVAE,
)
from sama.encoders.tiny import make_tiny_models, tiny_encoder_configs
from sama.errors import ConfigError, FatalError


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.setenv("TRANSFORMERS_OFFLINE", "1")
        root = tmp_path_factory.mktemp("tiny_models")
        paths = make_tiny_models(root, seed=0)
        yield {"paths": paths, "cfg": tiny_encoder_configs(root, device="cpu")}


@pytest.fixture(scope="module")
def vae(tiny):
    return WanVAE.load(tiny["cfg"]["vae"])


@pytest.fixture(scope="module")
def siglip(tiny):
    return SiglipAnchorEncoder.load(tiny["cfg"]["siglip"])


@pytest.fixture(scope="module")
def text(tiny):
    return UMT5TextEncoder.load(tiny["cfg"]["text_encoder"])


def _video(T: int, H: int = 64, W: int = 96, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (T, H, W, 3), dtype=np.uint8)


def _file_hashes(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


# ---- the tiny bundle ----------------------------------------------------------------------


def test_bundle_layout_is_the_real_repos(tiny):
    p = tiny["paths"]
    for name in ("vae", "text_encoder", "transformer", "siglip"):
        files = {f.name for f in Path(p[name]).iterdir()}
        assert "config.json" in files
        assert any(f.endswith(".safetensors") for f in files), files
    assert not [f for f in Path(p["root"]).rglob("*") if f.suffix in (".bin", ".pt", ".pkl")]
    assert (Path(p["tokenizer"]) / "tokenizer.json").is_file()
    assert (Path(p["siglip"]) / "preprocessor_config.json").is_file()
    index = json.loads((Path(p["wan"]) / "model_index.json").read_text())
    assert index["vae"] == ["diffusers", "AutoencoderKLWan"]
    vae_cfg = json.loads((Path(p["vae"]) / "config.json").read_text())
    assert vae_cfg["z_dim"] == 16 and len(vae_cfg["latents_mean"]) == 16


def test_bundle_is_deterministic(tiny, tmp_path):
    again = make_tiny_models(tmp_path / "again", seed=0)
    assert _file_hashes(Path(again["root"])) == _file_hashes(Path(tiny["paths"]["root"]))


def test_wan_pipeline_loads_the_tiny_repo(tiny):
    from diffusers import WanPipeline

    from sama.encoders._hf import quiet_hf

    with quiet_hf():
        pipe = WanPipeline.from_pretrained(tiny["paths"]["wan"])
        pipe.set_progress_bar_config(disable=True)
        out = pipe(
            prompt="A dog runs.",
            height=32,
            width=32,
            num_frames=5,
            num_inference_steps=1,
            guidance_scale=1.0,
            output_type="np",
            generator=torch.Generator().manual_seed(0),
        )
    assert out.frames.shape == (1, 5, 32, 32, 3)


def test_import_is_light():
    code = "import sys, sama.encoders; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


# ---- VAE ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "T, shape", [(9, (16, 3, 8, 12)), (5, (16, 2, 8, 12)), (1, (16, 1, 8, 12))]
)
def test_vae_latent_shape_follows_frame_rule(vae, T, shape):
    z = vae.encode(_video(T))
    assert tuple(z.shape) == shape and z.dtype == torch.float32


@pytest.mark.parametrize("T, H, W", [(6, 64, 96), (8, 64, 96), (0, 64, 96), (5, 60, 96)])
def test_vae_rejects_bad_shapes(vae, T, H, W):
    with pytest.raises(ValueError):
        vae.encode(np.zeros((T, H, W, 3), np.uint8))


def test_vae_rejects_float_pixels(vae):
    with pytest.raises(ValueError, match="uint8"):
        vae.encode(np.zeros((5, 64, 96, 3), np.float32))


def test_vae_normalisation_uses_config_stats(vae, tiny):
    frames = _video(5)
    stats = json.loads((Path(tiny["paths"]["vae"]) / "config.json").read_text())
    mean = torch.tensor(stats["latents_mean"]).view(1, 16, 1, 1, 1)
    std = torch.tensor(stats["latents_std"]).view(1, 16, 1, 1, 1)
    x = torch.from_numpy(frames).permute(3, 0, 1, 2)[None].float() / 255 * 2 - 1
    with torch.no_grad():
        mu = vae.model.encode(x).latent_dist.mean
    torch.testing.assert_close(vae.encode(frames), ((mu - mean) / std)[0], rtol=0, atol=1e-6)
    norm = vae.normalisation()
    assert norm["mean"] == pytest.approx(stats["latents_mean"])
    assert norm["std"] == pytest.approx(stats["latents_std"])
    assert norm["posterior"] == "mean"


@pytest.mark.parametrize("chunk", [4, 8])
def test_vae_chunked_encoding_is_identical(vae, tiny, chunk):
    frames = _video(13, seed=3)
    chunked = WanVAE(vae.model, dataclasses.replace(tiny["cfg"]["vae"], chunk_frames=chunk), "cpu")
    # Same encoder calls on the same 1 + 4 + 4 ... frame groups with the same causal cache.
    assert torch.equal(chunked.encode(frames), vae.encode(frames))


def test_vae_layouts_and_batch_agree(vae):
    frames = _video(5, seed=4)
    z = vae.encode(frames)
    assert torch.equal(vae.encode(torch.from_numpy(frames).permute(0, 3, 1, 2), "TCHW"), z)
    zb = vae.encode(np.stack([frames, _video(5, seed=5)]))
    assert zb.shape == (2, 16, 2, 8, 12)
    torch.testing.assert_close(zb[0], z, rtol=1e-5, atol=1e-5)


def test_vae_decode_and_black_latent(vae):
    out = vae.decode(vae.encode(_video(9)))
    assert out.shape == (9, 64, 96, 3) and out.dtype == torch.uint8
    full = vae.black_frame_latent_full(64, 96)
    assert full.shape == (16, 8, 12)
    black = vae.encode(np.zeros((5, 64, 96, 3), np.uint8))
    torch.testing.assert_close(full, black[:, 1])
    torch.testing.assert_close(vae.black_frame_latent(64, 96), black[:, 1].mean(dim=(1, 2)))
    first = vae.black_frame_latent(64, 96, latent_frame=0)
    torch.testing.assert_close(first, black[:, 0].mean(dim=(1, 2)))


def test_vae_model_info_hash_ignores_the_path(vae, tiny, tmp_path):
    info = vae.model_info()
    assert set(info) >= {"id", "subfolder", "revision", "config_hash", "dtype"}
    shutil.copytree(Path(tiny["paths"]["vae"]), tmp_path / "copy" / "vae")
    moved = WanVAE.load(dataclasses.replace(tiny["cfg"]["vae"], model_id=str(tmp_path / "copy")))
    assert moved.config_hash() == info["config_hash"] and len(info["config_hash"]) == 64


# ---- SigLIP -------------------------------------------------------------------------------


def _tower(siglip, frames):
    pixels = siglip.processor(images=list(frames), return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        return siglip.model(pixel_values=pixels)


def test_siglip_tokens_shape_and_pooling(siglip):
    frames = _video(3, 40, 56, seed=6)
    tokens = siglip.encode(frames)
    assert tokens.shape == (3, 65, 32)
    h = _tower(siglip, frames).last_hidden_state  # [3, 144, 32], a 12 x 12 grid
    torch.testing.assert_close(tokens[:, 64], h.mean(dim=1))
    grid = h.reshape(3, 12, 12, 32)
    # adaptive pool 12 -> 8: output cell 0 covers rows/cols [0, 2), cell 1 covers [1, 3)
    torch.testing.assert_close(tokens[:, 0], grid[:, 0:2, 0:2].mean(dim=(1, 2)))
    torch.testing.assert_close(tokens[:, 9], grid[:, 1:3, 1:3].mean(dim=(1, 2)))
    pooled = F.adaptive_avg_pool2d(grid.permute(0, 3, 1, 2), 8).flatten(2).transpose(1, 2)
    torch.testing.assert_close(tokens[:, :64], pooled)


def test_siglip_batching_and_pooler_mode(siglip, tiny):
    frames = _video(5, 48, 48, seed=7)
    small = SiglipAnchorEncoder(
        siglip.model, siglip.processor, dataclasses.replace(siglip.cfg, batch_size=2), "cpu"
    )
    torch.testing.assert_close(small.encode(frames), siglip.encode(frames))
    pooler_cfg = dataclasses.replace(tiny["cfg"]["siglip"], global_token="pooler")
    pooler = SiglipAnchorEncoder(siglip.model, siglip.processor, pooler_cfg, "cpu")
    torch.testing.assert_close(pooler.encode(frames)[:, 64], _tower(siglip, frames).pooler_output)
    info = siglip.pooling_info()
    assert info["tokens_per_image"] == 65 and info["patch_grid"] == [12, 12]
    assert info["preprocess"]["size"] == {"height": 48, "width": 48}


def test_siglip_pool_grid_larger_than_patch_grid_is_a_config_error(siglip):
    with pytest.raises(ConfigError, match="pool_grid"):
        SiglipAnchorEncoder(
            siglip.model, siglip.processor, dataclasses.replace(siglip.cfg, pool_grid=13), "cpu"
        )


# ---- text ---------------------------------------------------------------------------------

PROMPTS = [
    "[Complete the missing regions in the video.] A dog runs along a sandy beach at sunset.",
    "A cat.",
    "[Video edit]   Add a hat to the man. ",
    "",
]


def test_text_lengths_follow_the_attention_mask(text):
    embs = text.encode(PROMPTS)
    mask = text.tokenize(PROMPTS)["attention_mask"]
    assert mask.shape == (4, 512)  # padding="max_length", as WanPipeline
    assert [e.shape[0] for e in embs] == mask.sum(dim=1).tolist()
    assert all(e.shape[1] == 32 for e in embs) and len({e.shape[0] for e in embs}) == 4


def test_text_batching_and_padding_do_not_change_embeddings(text, tiny):
    ref = text.encode(PROMPTS)
    cfg = dataclasses.replace(tiny["cfg"]["text_encoder"], batch_size=1, padding="longest")
    other = UMT5TextEncoder(text.model, text.tokenizer, cfg, "cpu").encode(PROMPTS)
    for a, b in zip(ref, other, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_text_truncates_at_max_length(text, tiny):
    cfg = dataclasses.replace(tiny["cfg"]["text_encoder"], max_length=8)
    short = UMT5TextEncoder(text.model, text.tokenizer, cfg, "cpu")
    assert short.encode([PROMPTS[0]])[0].shape == (8, 32)


def test_tokenizer_round_trips(text):
    tok = text.tokenizer
    assert (tok.pad_token_id, tok.eos_token_id, tok.unk_token_id) == (0, 1, 2)
    for s in ["[Restore the video to normal playback speed.] Waves crash on rocks.", "Zebra 42!"]:
        ids = tok(s)["input_ids"]
        assert ids[-1] == tok.eos_token_id and tok.unk_token_id not in ids
        assert tok.decode(ids, skip_special_tokens=True) == s


# ---- loading errors and configs -----------------------------------------------------------


@pytest.mark.parametrize(
    "load, cfg",
    [
        (WanVAE.load, VAEConfig(model_id="/nonexistent/wan", device="cpu")),
        (UMT5TextEncoder.load, TextEncoderConfig(model_id="./no/such/dir", device="cpu")),
        (SiglipAnchorEncoder.load, SiglipConfig(model_id="/nonexistent/siglip", device="cpu")),
    ],
)
def test_missing_local_path_is_a_clear_error(load, cfg):
    with pytest.raises(ConfigError, match="does not exist"):
        load(cfg)


@pytest.mark.skipif(not hub_constants.HF_HUB_OFFLINE, reason="needs HF_HUB_OFFLINE=1 (no network)")
def test_unreachable_hub_id_is_a_fatal_error_that_says_where():
    with pytest.raises(FatalError, match="could not load 'no-org/no-model' subfolder 'vae'"):
        WanVAE.load(VAEConfig(model_id="no-org/no-model", device="cpu"))


def test_checkpoint_missing_weights_is_refused(tiny, tmp_path):
    from safetensors.torch import load_file, save_file

    src = Path(tiny["paths"]["vae"])
    dst = tmp_path / "broken" / "vae"
    shutil.copytree(src, dst)
    weights = load_file(src / "diffusion_pytorch_model.safetensors")
    dropped = sorted(weights)[0]
    del weights[dropped]
    save_file(weights, dst / "diffusion_pytorch_model.safetensors", metadata={"format": "pt"})
    with pytest.raises(FatalError, match="missing"):
        WanVAE.load(dataclasses.replace(tiny["cfg"]["vae"], model_id=str(tmp_path / "broken")))


def test_missing_subfolder_is_a_clear_error(tiny):
    cfg = dataclasses.replace(tiny["cfg"]["vae"], subfolder="vae_typo")
    with pytest.raises(ConfigError, match="no subfolder 'vae_typo'"):
        WanVAE.load(cfg)


@pytest.mark.parametrize(
    "cfg",
    [
        VAEConfig(chunk_frames=3),
        VAEConfig(chunk_frames=8, tiling=True),
        VAEConfig(device="gpu"),
        VAEConfig(dtype="fp8"),  # type: ignore[arg-type]
        SiglipConfig(global_token="cls"),  # type: ignore[arg-type]
        SiglipConfig(pool_grid=0),
        TextEncoderConfig(max_length=0),
        TextEncoderConfig(subfolder="../escape"),
    ],
)
def test_bad_configs_fail_validation(cfg):
    with pytest.raises(ConfigError):
        cfg.validate()


def test_default_ids_are_the_real_models():
    assert VAEConfig().validate().model_id == "Wan-AI/Wan2.1-T2V-14B-Diffusers"
    assert TextEncoderConfig().validate().subfolder == "text_encoder"
    assert SiglipConfig().validate().model_id == "google/siglip-so400m-patch14-384"
    assert SiglipConfig().tokens_per_anchor == 65
