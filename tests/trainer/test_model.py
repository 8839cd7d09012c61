"""SamaTransformer on a tiny random Wan DiT: sequence layout, RoPE, type embedding, heads, I/O.

Legend: B batch, C latent channels, T/H/W latent frames/height/width, N semantic tokens,
S SigLIP width, L text tokens, D text width.
"""

from __future__ import annotations

import pytest
import torch
from diffusers import WanTransformer3DModel
from diffusers.models.transformers import transformer_wan

from sama.errors import ConfigError
from trainer.model import SamaTransformer
from trainer.sama_modules import SamaConfig

SIGLIP = 32
TEXT_DIM = 32
CHANNELS = 4


def tiny_dit(seed: int = 0, **overrides) -> WanTransformer3DModel:
    torch.manual_seed(seed)
    kwargs = dict(
        patch_size=(1, 2, 2),
        num_attention_heads=2,
        attention_head_dim=12,
        in_channels=CHANNELS,
        out_channels=CHANNELS,
        text_dim=TEXT_DIM,
        freq_dim=32,
        ffn_dim=32,
        num_layers=2,
        rope_max_seq_len=32,
    )
    kwargs.update(overrides)
    return WanTransformer3DModel(**kwargs)


def tiny_model(seed: int = 0) -> SamaTransformer:
    return SamaTransformer(tiny_dit(seed), SamaConfig(siglip_dim=SIGLIP, mlp_hidden=16))


def inputs(batch: int = 2, frames: int = 3, anchors: int = 1, seed: int = 1) -> dict:
    g = torch.Generator().manual_seed(seed)
    return dict(
        noisy_target_BCTHW=torch.randn(batch, CHANNELS, frames, 8, 6, generator=g),
        timestep_B=torch.linspace(10.0, 900.0, batch),
        encoder_hidden_states_BLD=torch.randn(batch, 7, TEXT_DIM, generator=g),
        source_BCTHW=torch.randn(batch, CHANNELS, frames, 8, 6, generator=g),
        semantic_noisy_BNS=torch.randn(batch, 65 * anchors, SIGLIP, generator=g),
    )


@pytest.mark.parametrize("frames", [3, 1], ids=["video", "image"])
def test_equals_the_wan_dit_when_there_is_no_context(frames):
    """Our forward re-uses the DiT's modules faithfully: no source, no semantic tokens and a zero
    type embedding reproduce WanTransformer3DModel.forward exactly."""
    model = tiny_model()
    with torch.no_grad():
        model.segment_embedding.weight.zero_()
    x = inputs(frames=frames)
    ours, semantic = model(x["noisy_target_BCTHW"], x["timestep_B"], x["encoder_hidden_states_BLD"])
    ref = model.dit(
        x["noisy_target_BCTHW"], x["timestep_B"], x["encoder_hidden_states_BLD"], return_dict=False
    )[0]
    assert semantic is None
    assert torch.equal(ours, ref)


@pytest.mark.parametrize("frames", [3, 1], ids=["video", "image"])
@pytest.mark.parametrize("use_source", [True, False])
@pytest.mark.parametrize("anchors", [0, 1, 2])
def test_output_shapes(frames, use_source, anchors):
    model = tiny_model()
    x = inputs(frames=frames, anchors=max(anchors, 1))
    if not use_source:
        x["source_BCTHW"] = None
    if anchors == 0:
        x["semantic_noisy_BNS"] = None
    with torch.no_grad():
        velocity, semantic = model(**x)
        hidden, _, layout = model.forward_hidden(**x)
    assert velocity.shape == x["noisy_target_BCTHW"].shape
    n_video = frames * 4 * 3  # (8/2) x (6/2) patches per frame
    assert (layout.num_source, layout.num_semantic, layout.num_target) == (
        n_video if use_source else 0,
        65 * anchors,
        n_video,
    )
    assert hidden.shape == (2, layout.num_source + layout.num_semantic + n_video, model.dim)
    if anchors:
        assert semantic.shape == (2, 65 * anchors, SIGLIP)
        # The semantic head reads the semantic tokens' raw block outputs (before norm_out).
        torch.testing.assert_close(semantic, model.semantic_head(hidden[:, layout.semantic]))
    else:
        assert semantic is None


def test_semantic_q_and_k_are_exactly_zero(monkeypatch):
    """Spy on the attention call inside diffusers' processor: after the rotary step, the
    semantic tokens' queries and keys are exactly zero in every self-attention layer."""
    model = tiny_model()
    seen: list[tuple[torch.Tensor, torch.Tensor]] = []
    real = transformer_wan.dispatch_attention_fn

    def spy(query, key, value, **kwargs):
        if query.shape[1] == key.shape[1]:  # self-attention (the text has another length)
            seen.append((query.detach().clone(), key.detach().clone()))
        return real(query, key, value, **kwargs)

    monkeypatch.setattr(transformer_wan, "dispatch_attention_fn", spy)
    x = inputs()
    with torch.no_grad():
        model(**x)
    assert len(seen) == len(model.dit.blocks)
    n_source = x["source_BCTHW"].shape[2] * 12
    sem = slice(n_source, n_source + 65)
    for query_BLHD, key_BLHD in seen:
        assert query_BLHD.shape[1] == 2 * n_source + 65
        assert torch.count_nonzero(query_BLHD[:, sem]) == 0
        assert torch.count_nonzero(key_BLHD[:, sem]) == 0
        for part in (slice(0, n_source), slice(n_source + 65, None)):
            assert query_BLHD[:, part].abs().amin(dim=-1).gt(0).float().mean() > 0.5
            assert key_BLHD[:, part].abs().amax() > 0


def test_rotary_tables_source_and_target_share_one_grid():
    model = tiny_model()
    target = torch.zeros(1, CHANNELS, 3, 8, 6)
    cos, sin = model.rotary_tables(target, target, num_semantic=65)
    cos_t, sin_t = model.dit.rope(target)
    n = cos_t.shape[1]
    assert cos.shape == (1, 2 * n + 65, 1, 12)
    for table, ref in ((cos, cos_t), (sin, sin_t)):
        assert torch.equal(table[:, :n], table[:, n + 65 :])  # source == target
        assert torch.equal(table[:, n + 65 :], ref)  # the DiT's own grid
        assert torch.count_nonzero(table[:, n : n + 65]) == 0  # semantic: all zero
    # A shorter source (e.g. a sped-up clip) also starts at frame 0: no shift.
    short = torch.zeros(1, CHANNELS, 2, 8, 6)
    cos_s, _ = model.rotary_tables(target, short)
    assert torch.equal(cos_s[:, :24], cos_t[:, :24])


def test_the_source_conditions_the_prediction():
    model = tiny_model()
    x = inputs()
    with torch.no_grad():
        base, _ = model(**x)
        x2 = dict(x, source_BCTHW=x["source_BCTHW"] + 1.0)
        moved, _ = model(**x2)
        without, _ = model(**dict(x, source_BCTHW=None))
    assert (base - moved).abs().amax() > 1e-3
    assert (base - without).abs().amax() > 1e-3


def test_type_embedding_tells_source_from_target():
    """Identical source and target latents get identical RoPE and AdaLN, so only the type
    embedding can separate them."""
    model = tiny_model()
    x = inputs()
    x["source_BCTHW"] = x["noisy_target_BCTHW"].clone()
    x["semantic_noisy_BNS"] = None
    with torch.no_grad():
        hidden, _, layout = model.forward_hidden(**x)
        gap_with = (hidden[:, layout.source] - hidden[:, layout.target]).abs().amax()
        model.segment_embedding.weight.zero_()
        hidden, _, layout = model.forward_hidden(**x)
        gap_without = (hidden[:, layout.source] - hidden[:, layout.target]).abs().amax()
    assert gap_without < 1e-5
    assert gap_with > 1e-2


def _grads(model: SamaTransformer, x: dict) -> dict[str, torch.Tensor]:
    model.zero_grad(set_to_none=True)
    velocity, semantic = model(**x)
    (velocity.square().mean() + semantic.abs().mean()).backward()
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def test_gradients_reach_new_modules_and_dit_with_and_without_checkpointing():
    model = tiny_model()
    x = inputs()
    plain = _grads(model, x)
    for name in (
        "segment_embedding.weight",
        "siglip_feat_mlp.fc1.weight",
        "siglip_feat_mlp.norm.weight",
        "semantic_head.proj.weight",
        "dit.patch_embedding.weight",
        "dit.blocks.0.attn1.to_q.weight",
        "dit.blocks.1.ffn.net.2.weight",
        "dit.condition_embedder.time_proj.weight",
        "dit.proj_out.weight",
    ):
        assert plain[name].abs().amax() > 0, name
    # Every row of the type embedding is used.
    assert plain["segment_embedding.weight"].abs().amax(dim=1).gt(0).all()
    model.enable_gradient_checkpointing()
    assert model.gradient_checkpointing
    checkpointed = _grads(model, x)
    assert plain.keys() == checkpointed.keys()
    for name, grad in plain.items():
        torch.testing.assert_close(checkpointed[name], grad, rtol=1e-5, atol=1e-6)


def test_encoder_attention_mask_zeroes_padded_text():
    model = tiny_model()
    x = inputs()
    mask = torch.ones(2, 7, dtype=torch.bool)
    mask[0, 4:] = False
    zeroed = x["encoder_hidden_states_BLD"].clone()
    zeroed[0, 4:] = 0
    with torch.no_grad():
        masked, _ = model(**x, encoder_attention_mask=mask)
        ref, _ = model(**dict(x, encoder_hidden_states_BLD=zeroed))
        full, _ = model(**x, encoder_attention_mask=torch.ones(2, 7))
        plain, _ = model(**x)
    assert torch.equal(masked, ref)
    assert torch.equal(full, plain)


def test_bad_inputs_are_refused():
    model = tiny_model()
    x = inputs()
    with pytest.raises(ValueError, match="semantic_noisy_BNS"):
        model(**dict(x, semantic_noisy_BNS=torch.zeros(2, 64, SIGLIP)))
    with pytest.raises(ValueError, match="semantic_noisy_BNS"):
        model(**dict(x, semantic_noisy_BNS=torch.zeros(2, 65, SIGLIP + 1)))
    with pytest.raises(ValueError, match="not divisible"):
        model(**dict(x, noisy_target_BCTHW=torch.zeros(2, CHANNELS, 3, 7, 6)))
    with pytest.raises(ValueError, match="timestep_B"):
        model(**dict(x, timestep_B=torch.tensor(5.0)))
    with pytest.raises(ConfigError, match="text-to-video"):
        SamaTransformer(tiny_dit(image_dim=16, added_kv_proj_dim=24))
    with pytest.raises(ConfigError, match="num_types"):
        SamaConfig(num_types=2)


def test_new_module_init_is_seeded_and_follows_the_spec():
    torch.manual_seed(123)
    a = SamaTransformer(tiny_dit(), SamaConfig(siglip_dim=SIGLIP, mlp_hidden=16), init_seed=7)
    torch.manual_seed(456)
    b = SamaTransformer(tiny_dit(), SamaConfig(siglip_dim=SIGLIP, mlp_hidden=16), init_seed=7)
    for name, tensor in a.new_modules_state_dict().items():
        assert torch.equal(tensor, b.new_modules_state_dict()[name]), name
    head = a.semantic_head
    assert head.norm.eps == 1e-6 and a.siglip_feat_mlp.norm.eps == 1e-6
    assert head.proj.bias.abs().amax() < 1e-2  # small bias (std 1e-3)
    bound = (6 / (head.proj.in_features + head.proj.out_features)) ** 0.5  # Xavier-uniform
    assert head.proj.weight.abs().amax() <= bound
    assert a.segment_embedding.weight.shape == (3, a.dim)


def test_from_pretrained_dit_save_and_load_round_trip(tmp_path):
    dit = tiny_dit(seed=3)
    dit.save_pretrained(tmp_path / "wan" / "transformer")
    cfg = SamaConfig(siglip_dim=SIGLIP, mlp_hidden=16)
    loaded = SamaTransformer.from_pretrained_dit(tmp_path / "wan", config=cfg)
    for name, tensor in dit.state_dict().items():
        assert torch.equal(loaded.dit.state_dict()[name], tensor), name
    with torch.no_grad():
        loaded.semantic_head.proj.bias.add_(0.5)  # make the new modules differ from a fresh init
    loaded.save_pretrained(tmp_path / "ckpt")
    again = SamaTransformer.load(tmp_path / "ckpt")
    assert again.config == cfg
    x = inputs()
    with torch.no_grad():
        v1, s1 = loaded(**x)
        v2, s2 = again(**x)
    assert torch.equal(v1, v2) and torch.equal(s1, s2)
    with pytest.raises(FileNotFoundError, match="from_pretrained_dit"):
        SamaTransformer.load(tmp_path / "wan")


def test_bf16_weights(tmp_path):
    tiny_dit().save_pretrained(tmp_path / "transformer")
    model = SamaTransformer.from_pretrained_dit(
        tmp_path, torch_dtype=torch.bfloat16, config=SamaConfig(siglip_dim=SIGLIP, mlp_hidden=16)
    )
    assert model.segment_embedding.weight.dtype == torch.bfloat16
    assert model.semantic_head.proj.weight.dtype == torch.bfloat16
    with torch.no_grad():
        velocity, semantic = model(**inputs())
    assert velocity.dtype == torch.bfloat16 and torch.isfinite(velocity).all()
    assert semantic.dtype == torch.bfloat16 and torch.isfinite(semantic).all()
