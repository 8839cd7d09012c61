"""Load the released SAMA-14B weights (DiffSynth / original Wan names) into `SamaTransformer`.

The released state dict uses the original Wan2.1 module names plus SAMA's three new modules
(SAMA.md 7). The Wan part is renamed exactly as diffusers' official converter does
(`convert_wan_transformer_to_diffusers` in diffusers/loaders/single_file_utils.py: self_attn ->
attn1, cross_attn -> attn2, q/k/v/o -> to_q/to_k/to_v/to_out.0, the affine norm3 -> norm2,
ffn.0/2 -> ffn.net.0.proj/ffn.net.2, modulation -> scale_shift_table, head.head -> proj_out,
the embedders -> condition_embedder.*), then prefixed with `dit.`. The new modules keep their
names. The table is explicit rather than chained `str.replace` so that a name we do not know
fails loudly instead of being half-renamed; the tests check it against diffusers' function.

Only safetensors files are read (a single file, a sharded folder, or an index json); pickle
checkpoints are refused.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

from sama.errors import require

require("torch", "models")
require("safetensors", "models")

import torch  # noqa: E402
from safetensors import safe_open  # noqa: E402
from torch import nn  # noqa: E402

# Some exports (ComfyUI, original Wan tooling) prefix every name; diffusers strips it too.
STRIP_PREFIXES = ("model.diffusion_model.",)
_WB = ("weight", "bias")

# released module -> SamaTransformer module, for modules with weight and bias.
_TOP_MODULES = {
    "patch_embedding": "dit.patch_embedding",
    "text_embedding.0": "dit.condition_embedder.text_embedder.linear_1",
    "text_embedding.2": "dit.condition_embedder.text_embedder.linear_2",
    "time_embedding.0": "dit.condition_embedder.time_embedder.linear_1",
    "time_embedding.2": "dit.condition_embedder.time_embedder.linear_2",
    "time_projection.1": "dit.condition_embedder.time_proj",
    "head.head": "dit.proj_out",
    "siglip_feat_mlp.norm": "siglip_feat_mlp.norm",
    "siglip_feat_mlp.fc1": "siglip_feat_mlp.fc1",
    "siglip_feat_mlp.fc2": "siglip_feat_mlp.fc2",
    "semantic_head.norm": "semantic_head.norm",
    "semantic_head.proj": "semantic_head.proj",
}
# released parameter -> SamaTransformer parameter (single tensors).
_TOP_PARAMS = {
    "head.modulation": "dit.scale_shift_table",
    "segment_embedding.weight": "segment_embedding.weight",
}
# Inside blocks.{i}: module with weight and bias -> diffusers module.
_BLOCK_MODULES = {
    "self_attn.q": "attn1.to_q",
    "self_attn.k": "attn1.to_k",
    "self_attn.v": "attn1.to_v",
    "self_attn.o": "attn1.to_out.0",
    "cross_attn.q": "attn2.to_q",
    "cross_attn.k": "attn2.to_k",
    "cross_attn.v": "attn2.to_v",
    "cross_attn.o": "attn2.to_out.0",
    "norm3": "norm2",  # Wan's cross-attention LayerNorm; norm1/norm2 there have no weights
    "ffn.0": "ffn.net.0.proj",
    "ffn.2": "ffn.net.2",
}
_BLOCK_PARAMS = {
    "self_attn.norm_q.weight": "attn1.norm_q.weight",
    "self_attn.norm_k.weight": "attn1.norm_k.weight",
    "cross_attn.norm_q.weight": "attn2.norm_q.weight",
    "cross_attn.norm_k.weight": "attn2.norm_k.weight",
    "modulation": "scale_shift_table",
}
_BLOCK_RE = re.compile(r"^blocks\.(\d+)\.")


class CheckpointMismatchError(ValueError):
    """The checkpoint's names or shapes do not match what `SamaTransformer` expects."""


def released_name_table(num_layers: int) -> dict[str, str]:
    """Every released name of a SAMA model with `num_layers` blocks -> our name."""
    table = {f"{src}.{p}": f"{dst}.{p}" for src, dst in _TOP_MODULES.items() for p in _WB}
    table.update(_TOP_PARAMS)
    for i in range(num_layers):
        for src, dst in _BLOCK_MODULES.items():
            for p in _WB:
                table[f"blocks.{i}.{src}.{p}"] = f"dit.blocks.{i}.{dst}.{p}"
        for src, dst in _BLOCK_PARAMS.items():
            table[f"blocks.{i}.{src}"] = f"dit.blocks.{i}.{dst}"
    return table


def _strip_prefix(name: str) -> str:
    for prefix in STRIP_PREFIXES:
        if name.startswith(prefix):
            return name[len(prefix) :]
    return name


def _preview(names: Iterable[str], limit: int = 8) -> str:
    names = sorted(names)
    more = f" ... and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def map_released_names(names: Iterable[str]) -> dict[str, str]:
    """Released name (as stored, prefix included) -> our name; errors on unknown or missing.

    The number of blocks is read from the names (highest `blocks.{i}` + 1); every block up to it
    must be complete.
    """
    stripped = {name: _strip_prefix(name) for name in names}
    if len(set(stripped.values())) != len(stripped):
        raise CheckpointMismatchError("the same parameter appears with and without a prefix")
    layers = [int(m.group(1)) for n in stripped.values() if (m := _BLOCK_RE.match(n))]
    table = released_name_table(max(layers, default=-1) + 1)
    unknown = [n for n, s in stripped.items() if s not in table]
    missing = set(table) - set(stripped.values())
    if unknown or missing:
        raise CheckpointMismatchError(
            "not a SAMA / Wan2.1 text-to-video checkpoint in the DiffSynth layout: "
            f"{len(unknown)} unknown names [{_preview(unknown)}]; "
            f"{len(missing)} missing names [{_preview(missing)}]"
        )
    return {name: table[s] for name, s in stripped.items()}


def map_released_names_lenient(
    names: Iterable[str], num_layers: int
) -> tuple[dict[str, str], list[str]]:
    """Non-strict mapping for ``init_from`` (the reference loads with ``strict=False`` over the
    Wan2.1 base): ``(stored name -> our name, stored names that map to nothing)``. Names are
    matched against a model of ``num_layers`` blocks; what the model has and the checkpoint
    lacks is the caller's to keep."""
    table = released_name_table(num_layers)
    mapping: dict[str, str] = {}
    ignored: list[str] = []
    for name in names:
        ours = table.get(_strip_prefix(name))
        if ours is None:
            ignored.append(name)
        elif ours in mapping.values():
            raise CheckpointMismatchError(f"{name}: the same parameter appears twice")
        else:
            mapping[name] = ours
    return mapping, sorted(ignored)


def diffsynth_names(num_layers: int) -> dict[str, str]:
    """Our name -> released (DiffSynth) name: the inverse of ``released_name_table``."""
    return {ours: released for released, ours in released_name_table(num_layers).items()}


def convert_sama_state_dict(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename a released SAMA state dict onto `SamaTransformer.state_dict()` names (no copies)."""
    mapping = map_released_names(state_dict)
    return {mapping[name]: tensor for name, tensor in state_dict.items()}


def safetensors_files(path: str | Path) -> list[Path]:
    """The safetensors files of a checkpoint: one file, an index json, or a folder."""
    path = Path(path)
    if path.is_file():
        if path.name.endswith(".json"):
            weight_map = json.loads(path.read_text())["weight_map"]
            return [path.parent / f for f in sorted(set(weight_map.values()))]
        if path.suffix == ".safetensors":
            return [path]
        raise CheckpointMismatchError(f"{path}: only .safetensors checkpoints are read (no pickle)")
    if not path.is_dir():
        raise FileNotFoundError(f"no checkpoint at {path}")
    indexes = sorted(path.glob("*.safetensors.index.json"))
    if len(indexes) > 1:
        raise CheckpointMismatchError(f"{path} holds several index files: {indexes}")
    if indexes:
        return safetensors_files(indexes[0])
    files = sorted(path.glob("*.safetensors"))
    if not files:
        raise CheckpointMismatchError(
            f"{path} holds no .safetensors files (pickle checkpoints are not read)"
        )
    return files


@torch.no_grad()
def load_released_checkpoint(model: nn.Module, path: str | Path) -> None:
    """Copy a released SAMA checkpoint into `model` (a `SamaTransformer`), shard by shard.

    Names and shapes are checked in full before any tensor is read: unknown, missing or surplus
    names and shape mismatches raise `CheckpointMismatchError` and leave the model untouched.
    Values are cast to the model's dtypes.
    """
    shapes: dict[str, tuple[int, ...]] = {}
    names_by_file: dict[Path, list[str]] = {}
    for file in safetensors_files(path):
        with safe_open(str(file), framework="pt") as handle:
            names_by_file[file] = list(handle.keys())
            for name in names_by_file[file]:
                if name in shapes:
                    raise CheckpointMismatchError(f"{path}: {name} appears in more than one shard")
                shapes[name] = tuple(handle.get_slice(name).get_shape())
    mapping = map_released_names(shapes)
    params = model.state_dict(keep_vars=True)
    absent = set(params) - set(mapping.values())
    surplus = set(mapping.values()) - set(params)
    if absent or surplus:
        raise CheckpointMismatchError(
            f"{path} does not fit this model (different number of layers?): model parameters "
            f"not in the checkpoint [{_preview(absent)}]; checkpoint parameters not in the "
            f"model [{_preview(surplus)}]"
        )
    wrong = [
        f"{n} {shape} -> {mapping[n]} {tuple(params[mapping[n]].shape)}"
        for n, shape in shapes.items()
        if shape != tuple(params[mapping[n]].shape)
    ]
    if wrong:
        raise CheckpointMismatchError(f"{path}: shape mismatches: {_preview(wrong)}")
    for file, names in names_by_file.items():
        with safe_open(str(file), framework="pt") as handle:
            for name in names:
                params[mapping[name]].copy_(handle.get_tensor(name))
