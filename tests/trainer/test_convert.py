"""Released SAMA checkpoint names (DiffSynth / original Wan layout, SAMA.md 7) -> SamaTransformer."""

from __future__ import annotations

import json

import pytest
import torch
from diffusers import WanTransformer3DModel
from diffusers.loaders.single_file_utils import convert_wan_transformer_to_diffusers
from safetensors.torch import save_file

from tests.trainer.trainer_fixtures import RELEASED_BLOCK_NAMES, RELEASED_TOP_NAMES
from trainer.convert import (
    CheckpointMismatchError,
    convert_sama_state_dict,
    load_released_checkpoint,
    released_name_table,
)
from trainer.model import SamaTransformer
from trainer.sama_modules import SamaConfig

NUM_LAYERS = 2

NEW_MODULES = ("segment_embedding", "siglip_feat_mlp", "semantic_head")


def tiny_model(num_layers: int = NUM_LAYERS) -> SamaTransformer:
    torch.manual_seed(0)
    dit = WanTransformer3DModel(
        patch_size=(1, 2, 2),
        num_attention_heads=2,
        attention_head_dim=12,
        in_channels=4,
        out_channels=4,
        text_dim=32,
        freq_dim=32,
        ffn_dim=32,
        num_layers=num_layers,
        rope_max_seq_len=32,
    )
    return SamaTransformer(dit, SamaConfig(siglip_dim=32, mlp_hidden=16))


def released_state_dict(model: SamaTransformer) -> dict[str, torch.Tensor]:
    """A synthetic released checkpoint: every tensor filled with its own distinct values."""
    shapes = {k: v.shape for k, v in model.state_dict().items()}
    table = released_name_table(len(model.dit.blocks))
    g = torch.Generator().manual_seed(42)
    return {
        name: torch.randn(shapes[ours], generator=g) + 10 * i
        for i, (name, ours) in enumerate(sorted(table.items()))
    }


def test_name_table_is_the_released_layout():
    table = released_name_table(NUM_LAYERS)
    expected = set(RELEASED_TOP_NAMES)
    for i in range(NUM_LAYERS):
        expected |= {f"blocks.{i}.{n}" for n in RELEASED_BLOCK_NAMES}
    assert set(table) == expected
    # ...and it lands exactly on SamaTransformer's parameters.
    assert set(table.values()) == set(tiny_model().state_dict())


def test_wan_names_agree_with_diffusers_official_converter():
    table = released_name_table(NUM_LAYERS)
    wan_names = [n for n in table if n.split(".")[0] not in NEW_MODULES]
    theirs = convert_wan_transformer_to_diffusers({n: torch.zeros(1) for n in wan_names})
    assert len(theirs) == len(wan_names)
    ours = {table[n] for n in wan_names}
    assert ours == {f"dit.{n}" for n in theirs}
    # Spot checks of the renames that are easy to get wrong.
    assert table["blocks.1.norm3.weight"] == "dit.blocks.1.norm2.weight"
    assert table["blocks.0.self_attn.o.bias"] == "dit.blocks.0.attn1.to_out.0.bias"
    assert table["blocks.0.cross_attn.norm_k.weight"] == "dit.blocks.0.attn2.norm_k.weight"
    assert table["blocks.0.modulation"] == "dit.blocks.0.scale_shift_table"
    assert table["head.modulation"] == "dit.scale_shift_table"
    assert table["head.head.weight"] == "dit.proj_out.weight"
    assert table["blocks.0.ffn.0.weight"] == "dit.blocks.0.ffn.net.0.proj.weight"


def test_convert_then_strict_load_puts_every_value_in_place():
    model = tiny_model()
    released = released_state_dict(model)
    converted = convert_sama_state_dict(released)
    model.load_state_dict(converted, strict=True)
    params = dict(model.named_parameters())
    table = released_name_table(NUM_LAYERS)
    for name, tensor in released.items():
        assert torch.equal(params[table[name]], tensor), name
    assert torch.equal(model.dit.blocks[1].norm2.bias, released["blocks.1.norm3.bias"])
    assert torch.equal(
        model.dit.blocks[0].attn2.to_k.weight, released["blocks.0.cross_attn.k.weight"]
    )
    assert torch.equal(model.segment_embedding.weight, released["segment_embedding.weight"])
    assert torch.equal(model.siglip_feat_mlp.fc2.weight, released["siglip_feat_mlp.fc2.weight"])
    assert torch.equal(model.semantic_head.proj.bias, released["semantic_head.proj.bias"])


def test_prefixed_names_are_accepted():
    released = released_state_dict(tiny_model())
    prefixed = {f"model.diffusion_model.{k}": v for k, v in released.items()}
    assert convert_sama_state_dict(prefixed).keys() == convert_sama_state_dict(released).keys()


@pytest.mark.parametrize(
    "extra",
    ["blocks.0.self_attn.k_img.weight", "img_emb.proj.0.weight", "blocks.0.norm2.weight", "lora_A"],
)
def test_unknown_names_raise(extra):
    released = released_state_dict(tiny_model())
    released[extra] = torch.zeros(1)
    with pytest.raises(CheckpointMismatchError, match="1 unknown names"):
        convert_sama_state_dict(released)


def test_missing_names_raise():
    released = released_state_dict(tiny_model())
    del released["blocks.1.cross_attn.norm_q.weight"]
    del released["semantic_head.proj.bias"]
    with pytest.raises(CheckpointMismatchError, match="2 missing names") as err:
        convert_sama_state_dict(released)
    assert "blocks.1.cross_attn.norm_q.weight" in str(err.value)


def test_load_single_file_and_cast_to_model_dtype(tmp_path):
    model = tiny_model()
    released = released_state_dict(model)
    save_file(
        {k: v.to(torch.bfloat16) for k, v in released.items()}, str(tmp_path / "sama.safetensors")
    )
    load_released_checkpoint(model, tmp_path / "sama.safetensors")
    assert model.dit.proj_out.weight.dtype == torch.float32
    torch.testing.assert_close(
        model.dit.proj_out.weight, released["head.head.weight"].to(torch.bfloat16).float()
    )


def test_load_sharded_folder_with_index(tmp_path):
    model = tiny_model()
    released = released_state_dict(model)
    names = sorted(released)
    shards = {
        "m-00001-of-00002.safetensors": names[::2],
        "m-00002-of-00002.safetensors": names[1::2],
    }
    for file, part in shards.items():
        save_file({k: released[k] for k in part}, str(tmp_path / file))
    weight_map = {k: file for file, part in shards.items() for k in part}
    (tmp_path / "m.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    load_released_checkpoint(model, tmp_path)
    converted = convert_sama_state_dict(released)
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, converted[name]), name


def test_load_refuses_mismatches_and_leaves_the_model_untouched(tmp_path):
    model = tiny_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    released = released_state_dict(model)
    released["blocks.0.ffn.0.weight"] = torch.zeros(5, 5)
    save_file(released, str(tmp_path / "bad_shape.safetensors"))
    with pytest.raises(CheckpointMismatchError, match="shape mismatches"):
        load_released_checkpoint(model, tmp_path / "bad_shape.safetensors")
    deeper = released_state_dict(tiny_model(num_layers=3))
    save_file(deeper, str(tmp_path / "deeper.safetensors"))
    with pytest.raises(CheckpointMismatchError, match="number of layers"):
        load_released_checkpoint(model, tmp_path / "deeper.safetensors")
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, before[name]), name
    (tmp_path / "pickled.pt").write_bytes(b"not read")
    with pytest.raises(CheckpointMismatchError, match="safetensors"):
        load_released_checkpoint(model, tmp_path / "pickled.pt")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(CheckpointMismatchError, match="no .safetensors"):
        load_released_checkpoint(model, empty)
