"""Weights straight into each rank's shard: the DiT built on the meta device, safetensors read
by byte range.

At 14B a full fp32 copy is ~57 GB; loading it on every rank before sharding (what
``from_pretrained`` then ``fully_shard`` does) needs ~57 GB of host memory per GPU. Instead the
model is built on the meta device (no memory), sharded (FSDP2 shards dim 0 of every
parameter), materialised empty on the training device, and each rank reads only the rows of
its own shard from the safetensors files: a safetensors tensor is a contiguous row-major byte
range after a JSON header, so rows ``[a, b)`` are one ``pread`` of ``(b - a) * row_bytes``
bytes. The header is parsed and checked here (dtype, shape, offsets inside the file) rather
than memory-mapped, so host memory holds one tensor slice at a time and no page-cache pages
are counted against the process.

Parameters not in any source keep a fresh init: SAMA's new modules are initialised from the
run seed alone on the CPU (``make_new_modules``) and sharded like the rest, so every world size
starts from the same values.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from sama.errors import ConfigError

MAX_HEADER_BYTES = 100 * 1024 * 1024
DTYPES = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}


class WeightsError(ValueError):
    """A weights file that is not valid safetensors, or does not fit the model."""


@dataclass(frozen=True)
class TensorEntry:
    file: Path
    dtype: torch.dtype
    shape: tuple[int, ...]
    begin: int  # absolute byte offsets in the file
    end: int


def read_header(path: str | Path) -> dict[str, TensorEntry]:
    """The tensors of one safetensors file, every offset checked against the file size."""
    path = Path(path)
    size = path.stat().st_size
    with open(path, "rb") as f:
        raw = f.read(8)
        if len(raw) < 8:
            raise WeightsError(f"{path}: too short to be a safetensors file")
        n = int.from_bytes(raw, "little")
        if n > MAX_HEADER_BYTES or 8 + n > size:
            raise WeightsError(f"{path}: header length {n} does not fit the file ({size} bytes)")
        try:
            header = json.loads(f.read(n))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise WeightsError(f"{path}: header is not JSON ({e})") from None
    if not isinstance(header, dict):
        raise WeightsError(f"{path}: header is not a JSON object")
    data_start, out = 8 + n, {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        out[name] = _entry(path, name, info, data_start, size)
    return out


def _entry(path: Path, name: str, info: object, start: int, size: int) -> TensorEntry:
    bad = f"{path}: tensor {name!r}"
    if not isinstance(info, dict) or info.get("dtype") not in DTYPES:
        raise WeightsError(f"{bad} has no known dtype (one of {sorted(DTYPES)})")
    shape, offsets = info.get("shape"), info.get("data_offsets")
    if not isinstance(shape, list) or not all(isinstance(x, int) and x >= 0 for x in shape):
        raise WeightsError(f"{bad}: shape {shape!r} is not a list of sizes")
    if not (isinstance(offsets, list) and len(offsets) == 2) or not all(
        isinstance(x, int) for x in offsets
    ):
        raise WeightsError(f"{bad}: data_offsets {offsets!r} are not two integers")
    dtype = DTYPES[info["dtype"]]
    begin, end = start + offsets[0], start + offsets[1]
    expect = math.prod(shape) * torch.empty((), dtype=dtype).element_size()
    if not start <= begin <= end <= size or end - begin != expect:
        raise WeightsError(f"{bad}: bytes [{begin}, {end}) do not hold {shape} {dtype} in {size}")
    return TensorEntry(path, dtype, tuple(shape), begin, end)


class SafetensorsIndex:
    """Every tensor of a set of safetensors files; reads row ranges without mapping files."""

    def __init__(self, files: Iterable[str | Path]) -> None:
        self.entries: dict[str, TensorEntry] = {}
        for file in files:
            for name, entry in read_header(file).items():
                if name in self.entries:
                    raise WeightsError(f"{name} is in both {self.entries[name].file} and {file}")
                self.entries[name] = entry

    @classmethod
    def of(cls, path: str | Path) -> SafetensorsIndex:
        """A single file, an ``*.safetensors.index.json``, or a folder of them."""
        from trainer.convert import safetensors_files

        return cls(safetensors_files(path))

    def _span(self, name: str, start: int | None, stop: int | None) -> tuple[int, int, int]:
        e = self.entries[name]
        count = e.shape[0] if e.shape else 1
        start = 0 if start is None else start
        stop = count if stop is None else stop
        if not 0 <= start <= stop <= count:
            raise WeightsError(f"{name}: rows [{start}, {stop}) outside shape {e.shape}")
        row = (e.end - e.begin) // count if count else 0
        return start, stop, row

    def _read(self, name: str, offset: int, view: memoryview) -> None:
        e, got = self.entries[name], 0
        with open(e.file, "rb") as f:
            f.seek(e.begin + offset)
            while got < len(view):
                n = f.readinto(view[got:])
                if not n:
                    raise WeightsError(f"{e.file}: file ends inside {name}")
                got += n

    def rows(self, name: str, start: int | None = None, stop: int | None = None) -> torch.Tensor:
        """Rows ``[start, stop)`` of dim 0 (the whole tensor by default), as stored."""
        e = self.entries[name]
        start, stop, row = self._span(name, start, stop)
        buf = torch.empty((stop - start) * row, dtype=torch.uint8)
        self._read(name, start * row, memoryview(buf.numpy()))
        shape = (stop - start, *e.shape[1:]) if e.shape else ()
        return buf.view(e.dtype).reshape(shape)

    def read_into(self, name: str, start: int, stop: int, out: torch.Tensor) -> bool:
        """Read rows ``[start, stop)`` straight into ``out`` when it is a contiguous CPU tensor
        of the stored dtype and size (no intermediate copy); False when it is not."""
        e = self.entries[name]
        start, stop, row = self._span(name, start, stop)
        fits = out.device.type == "cpu" and out.is_contiguous() and out.dtype == e.dtype
        if not fits or out.numel() * out.element_size() != (stop - start) * row:
            return False
        if out.numel():
            self._read(name, start * row, memoryview(out.reshape(-1).view(torch.uint8).numpy()))
        return True


@dataclass(frozen=True)
class Source:
    """Where one parameter's full value comes from: a file tensor or an in-memory one."""

    shape: tuple[int, ...]
    rows: Callable[[int, int], torch.Tensor]
    origin: str
    into: Callable[[torch.Tensor, int, int], bool] | None = None  # direct read, if possible


def file_source(index: SafetensorsIndex, key: str) -> Source:
    e = index.entries[key]
    return Source(
        e.shape,
        lambda a, b: index.rows(key, a, b),
        f"{e.file.name}:{key}",
        lambda out, a, b: index.read_into(key, a, b, out),
    )


def memory_source(tensor: torch.Tensor, origin: str) -> Source:
    return Source(tuple(tensor.shape), lambda a, b: tensor[a:b] if tensor.ndim else tensor, origin)


def local_rows(param: torch.Tensor) -> tuple[torch.Tensor, int, int]:
    """``(local tensor, first row, last row + 1)`` of a parameter (a DTensor shard: its rows)."""
    if hasattr(param, "device_mesh"):
        from torch.distributed.tensor._utils import compute_local_shape_and_global_offset

        shape, offset = compute_local_shape_and_global_offset(
            param.shape, param.device_mesh, param.placements
        )
        if any(offset[1:]):
            raise WeightsError("only dim-0 sharding (FSDP2's) is supported")
        local = param.to_local()
        return local, (offset[0] if shape else 0), (offset[0] + shape[0] if shape else 1)
    return param.data, 0, (param.shape[0] if param.ndim else 1)


@torch.no_grad()
def fill_parameters(model: nn.Module, sources: Mapping[str, Source]) -> None:
    """Copy this rank's rows of every ``sources`` entry into the model (cast to its dtype)."""
    params = dict(model.named_parameters())
    unknown = sorted(set(sources) - set(params))
    if unknown:
        raise WeightsError(f"no such parameters in the model: {unknown[:5]}")
    wrong = [
        f"{n} {s.shape} ({s.origin}) vs model {tuple(params[n].shape)}"
        for n, s in sources.items()
        if tuple(s.shape) != tuple(params[n].shape)
    ]
    if wrong:
        raise WeightsError(f"shape mismatches: {wrong[:5]}" + (" ..." if len(wrong) > 5 else ""))
    for name, src in sources.items():
        local, a, b = local_rows(params[name])
        if local.numel() and not (src.into is not None and src.into(local, a, b)):
            local.copy_(src.rows(a, b).reshape(local.shape))


# ---- the DiT on the meta device --------------------------------------------------------------


def load_dit_config(cfg) -> dict:
    """``transformer/config.json`` of ``dit.model_id`` (local or hub; no weights)."""
    from diffusers import WanTransformer3DModel

    from sama.encoders._hf import load_or_explain

    d = cfg.dit
    return dict(
        load_or_explain(
            lambda: WanTransformer3DModel.load_config(
                d.model_id, subfolder=d.subfolder, revision=d.revision
            ),
            "dit config",
            d.model_id,
            d.subfolder,
            d.revision,
        )
    )


def meta_model(dit_config: dict, sama_cfg, init_seed: int = 0):
    """A ``SamaTransformer`` whose parameters are on the meta device (nothing allocated)."""
    from diffusers import WanTransformer3DModel

    from sama.encoders._hf import quiet_hf
    from trainer.model import SamaTransformer

    with torch.device("meta"), quiet_hf():
        dit = WanTransformer3DModel.from_config(dit_config)
        return SamaTransformer(dit, sama_cfg, init_seed=init_seed)


def materialize(model: nn.Module, device: torch.device) -> None:
    """Allocate (uninitialised) storage on ``device`` and rebuild the non-persistent RoPE
    tables, which are computed at construction and so were never made on the meta device."""
    from diffusers.models.transformers.transformer_wan import WanRotaryPosEmbed

    model.to_empty(device=device)
    rope = model.dit.rope
    fresh = WanRotaryPosEmbed(rope.attention_head_dim, rope.patch_size, rope.max_seq_len)
    rope.freqs_cos = fresh.freqs_cos.to(device)
    rope.freqs_sin = fresh.freqs_sin.to(device)


def diffusers_weight_files(folder: Path) -> list[Path]:
    """The weights of a diffusers model folder: its index, else its one unsharded file
    (precision variants such as ``*.fp16.safetensors`` are not mixed in)."""
    from trainer.convert import safetensors_files

    for name in ("diffusion_pytorch_model.safetensors.index.json", "model.safetensors.index.json"):
        if (folder / name).is_file():
            return safetensors_files(folder / name)
    for name in ("diffusion_pytorch_model.safetensors", "model.safetensors"):
        if (folder / name).is_file():
            return [folder / name]
    raise ConfigError(f"{folder} holds no diffusion_pytorch_model.safetensors (or its index)")


def dit_weights_dir(cfg, is_first: bool, barrier: Callable[[], None]) -> Path:
    """The local folder of ``dit.model_id``'s weights (downloaded once per node if a hub id)."""
    d = cfg.dit
    local = Path(d.model_id).expanduser()
    if local.is_dir():
        return local / d.subfolder if d.subfolder else local
    from huggingface_hub import snapshot_download

    pattern = [f"{d.subfolder}/*"] if d.subfolder else None
    if is_first:
        snapshot_download(d.model_id, revision=d.revision, allow_patterns=pattern)
    barrier()
    root = snapshot_download(
        d.model_id, revision=d.revision, allow_patterns=pattern, local_files_only=True
    )
    return Path(root) / d.subfolder if d.subfolder else Path(root)


def dit_sources(folder: Path, prefix: str = "dit.") -> dict[str, Source]:
    """Our parameter name -> source, for a diffusers ``WanTransformer3DModel`` folder."""
    index = SafetensorsIndex(diffusers_weight_files(folder))
    return {prefix + key: file_source(index, key) for key in index.entries}
