"""Tiny random-weight models laid out like the real hub repos, for tests and the demo.

No weights can be downloaded in tests, and a stand-in class would skip the code that matters
(``from_pretrained``, configs, tokenisation). So we build the *real* classes from tiny configs
and write them with ``save_pretrained`` (safetensors), in the real repos' layout:

    DIR/wan/{vae,text_encoder,tokenizer,transformer,scheduler}, DIR/wan/model_index.json
        (like Wan-AI/Wan2.1-T2V-14B-Diffusers; ``WanPipeline.from_pretrained`` loads it)
    DIR/siglip  (a full SiglipModel + preprocessor_config.json, like
        google/siglip-so400m-patch14-384; the encoder loads its vision tower)

The structural constants that our code depends on are kept: 16 latent channels, 4x/8x VAE
strides, patch (1, 2, 2), text_dim = umT5 d_model, a SigLIP patch grid larger than 8x8 (12x12)
so the adaptive pool really pools. The tokenizer is a real Unigram vocabulary trained here on a
few dozen sentences (pretext prefixes, captions, edit instructions) and wrapped in transformers'
``T5Tokenizer``. Everything is deterministic given ``seed``; the global RNG is left untouched.
"""

from __future__ import annotations

import json
import math
import string
from pathlib import Path
from typing import Any

from sama.encoders.config import SiglipConfig, TextEncoderConfig, VAEConfig
from sama.rng import derive_seed

TINY_SIGLIP_IMAGE_SIZE = 48  # patch 4 -> 12x12 patch grid
TINY_TEXT_DIM = 32

_CAPTIONS = [
    "A dog runs along a sandy beach at sunset.",
    "A man rides a red bicycle down a steep hill.",
    "Clouds drift slowly over a snowy mountain peak.",
    "A woman pours coffee into a white cup on a wooden table.",
    "Two children play football in a green park.",
    "A cat sleeps on a blue sofa near the window.",
    "Waves crash against black rocks under a grey sky.",
    "A car drives through a busy city street at night, lights flashing.",
    "A chef slices vegetables quickly in a small kitchen.",
    "Birds fly over a calm lake in the early morning.",
    "A close-up of hands typing on a laptop keyboard.",
    "An old train crosses a stone bridge in the forest.",
]
_INSTRUCTIONS = [
    "[Video edit] Replace the red car with a blue truck.",
    "[Video edit] Add a hat to the man.",
    "[Video edit] Remove the dog from the beach.",
    "[Video edit] Change the style to a watercolor painting.",
    "[Video edit] Make it snow in the park.",
    "[Video edit] Add subtitles that say hello world.",
]


def _tokenizer_corpus() -> list[str]:
    from sama.pretext import PROMPT_PREFIX

    prefixes = [p for p in PROMPT_PREFIX.values() if p]
    lines = [f"{p} {c}" for p in prefixes for c in _CAPTIONS[:4]]
    return lines + _CAPTIONS + _INSTRUCTIONS


def _make_tokenizer(out: Path) -> Any:
    """Train a Unigram vocabulary with ``tokenizers``; save it as a ``T5Tokenizer``.

    The trainer's EM scores vary run to run (parallel, hash-ordered), its piece set does not;
    we keep the learned pieces and score them by smoothed log-frequency in the corpus, so the
    tokenizer is identical on every build.
    """
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import T5Tokenizer

    specials = ["<pad>", "</s>", "<unk>"]  # T5 ids: pad 0, eos 1, unk 2
    corpus = _tokenizer_corpus()
    tk = Tokenizer(models.Unigram())
    tk.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    trainer = trainers.UnigramTrainer(
        vocab_size=400,
        special_tokens=specials,
        unk_token="<unk>",
        initial_alphabet=list(string.ascii_letters + string.digits + string.punctuation),
        show_progress=False,
    )
    tk.train_from_iterator(corpus, trainer=trainer)
    pieces = sorted({p for p, _ in json.loads(tk.to_str())["model"]["vocab"]} - set(specials))
    words = ["▁" + w for line in corpus for w in line.split()]
    counts = {p: sum(w.count(p) for w in words) + 1 for p in pieces}
    total = sum(counts.values())
    scored = sorted(
        ((p, round(math.log(counts[p] / total), 6)) for p in pieces), key=lambda ps: (-ps[1], ps[0])
    )
    tokenizer = T5Tokenizer(vocab=[(s, 0.0) for s in specials] + scored, extra_ids=0)
    tokenizer.save_pretrained(out)
    return tokenizer


def _make_vae(out: Path, seed: int) -> None:
    import torch
    from diffusers import AutoencoderKLWan

    g = torch.Generator().manual_seed(derive_seed(seed, "vae-stats"))
    mean = [round(v, 4) for v in (torch.randn(16, generator=g) * 0.5).tolist()]
    std = [round(v, 4) for v in (torch.rand(16, generator=g) * 1.5 + 0.5).tolist()]
    torch.manual_seed(derive_seed(seed, "vae"))
    vae = AutoencoderKLWan(
        base_dim=8,
        z_dim=16,
        dim_mult=[1, 2, 4, 4],
        num_res_blocks=1,
        latents_mean=mean,
        latents_std=std,
    )
    vae.save_pretrained(out, safe_serialization=True)


def _make_text_encoder(out: Path, vocab_size: int, seed: int) -> None:
    import torch
    from transformers import UMT5Config, UMT5EncoderModel

    torch.manual_seed(derive_seed(seed, "text_encoder"))
    cfg = UMT5Config(
        vocab_size=vocab_size,
        d_model=TINY_TEXT_DIM,
        d_kv=8,
        d_ff=64,
        num_layers=2,
        num_heads=4,
        relative_attention_num_buckets=8,
        relative_attention_max_distance=32,
        feed_forward_proj="gated-gelu",
        tie_word_embeddings=False,
        pad_token_id=0,
        eos_token_id=1,
        decoder_start_token_id=0,
    )
    UMT5EncoderModel(cfg).save_pretrained(out, safe_serialization=True)


def _make_transformer(out: Path, seed: int) -> None:
    import torch
    from diffusers import WanTransformer3DModel

    torch.manual_seed(derive_seed(seed, "transformer"))
    # attention_head_dim 12: RoPE splits it into t/h/w = 4/4/4 (h = w = 2 * (12 // 6)).
    model = WanTransformer3DModel(
        patch_size=(1, 2, 2),
        num_attention_heads=2,
        attention_head_dim=12,
        in_channels=16,
        out_channels=16,
        text_dim=TINY_TEXT_DIM,
        freq_dim=32,
        ffn_dim=48,
        num_layers=2,
    )
    model.save_pretrained(out, safe_serialization=True)


def _make_scheduler(out: Path) -> None:
    from diffusers import UniPCMultistepScheduler

    # Flow-matching UniPC as in the Wan diffusers repo; shift 5 as SAMA's inference (SAMA.md §5).
    UniPCMultistepScheduler(
        prediction_type="flow_prediction",
        use_flow_sigmas=True,
        flow_shift=5.0,
        num_train_timesteps=1000,
    ).save_pretrained(out)


def _make_siglip(out: Path, seed: int) -> None:
    import torch
    from transformers import SiglipConfig as HFSiglipConfig
    from transformers import SiglipModel
    from transformers.models.siglip.image_processing_pil_siglip import SiglipImageProcessorPil

    torch.manual_seed(derive_seed(seed, "siglip"))
    cfg = HFSiglipConfig(
        text_config=dict(
            vocab_size=64,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=1,
            num_attention_heads=2,
            max_position_embeddings=16,
            pad_token_id=1,
            bos_token_id=2,
            eos_token_id=3,
        ),
        vision_config=dict(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            image_size=TINY_SIGLIP_IMAGE_SIZE,
            patch_size=4,
        ),
    )
    SiglipModel(cfg).save_pretrained(out, safe_serialization=True)
    side = TINY_SIGLIP_IMAGE_SIZE
    SiglipImageProcessorPil(
        size={"height": side, "width": side},
        resample=3,  # PIL bicubic, as so400m
        image_mean=[0.5, 0.5, 0.5],
        image_std=[0.5, 0.5, 0.5],
    ).save_pretrained(out)


_MODEL_INDEX = {
    "_class_name": "WanPipeline",
    "scheduler": ["diffusers", "UniPCMultistepScheduler"],
    "text_encoder": ["transformers", "UMT5EncoderModel"],
    "tokenizer": ["transformers", "T5Tokenizer"],
    "transformer": ["diffusers", "WanTransformer3DModel"],
    "vae": ["diffusers", "AutoencoderKLWan"],
}


def make_tiny_models(out_dir: str | Path, seed: int = 0) -> dict[str, str]:
    """Write the tiny bundle under ``out_dir``; return ``{name: path}`` of what was written."""
    import diffusers
    import torch

    from sama.encoders._hf import quiet_hf

    root = Path(out_dir)
    wan, siglip = root / "wan", root / "siglip"
    paths = {
        "vae": wan / "vae",
        "text_encoder": wan / "text_encoder",
        "tokenizer": wan / "tokenizer",
        "transformer": wan / "transformer",
        "scheduler": wan / "scheduler",
    }
    with torch.random.fork_rng(devices=[]), quiet_hf():
        tokenizer = _make_tokenizer(paths["tokenizer"])
        _make_vae(paths["vae"], seed)
        _make_text_encoder(paths["text_encoder"], len(tokenizer), seed)
        _make_transformer(paths["transformer"], seed)
        _make_scheduler(paths["scheduler"])
        _make_siglip(siglip, seed)
    index = {**_MODEL_INDEX, "_diffusers_version": diffusers.__version__}
    (wan / "model_index.json").write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")
    note = {"seed": seed, "note": "random weights for tests and demos; not a real model"}
    (root / "TINY_MODELS.json").write_text(json.dumps(note, indent=2) + "\n")
    return {
        "root": str(root),
        "wan": str(wan),
        **{k: str(v) for k, v in paths.items()},
        "siglip": str(siglip),
    }


def tiny_encoder_configs(out_dir: str | Path, device: str = "auto") -> dict[str, Any]:
    """Encoder configs pointing at a bundle written by ``make_tiny_models(out_dir)``."""
    root = Path(out_dir)
    wan = str(root / "wan")
    return {
        "vae": VAEConfig(model_id=wan, device=device),
        "text_encoder": TextEncoderConfig(model_id=wan, device=device),
        "siglip": SiglipConfig(model_id=str(root / "siglip"), device=device),
    }
