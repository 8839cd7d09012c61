"""torch <-> stored tensor columns (see ``datasets_spec.tensors`` for the byte layout)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from datasets_spec.tensors import decode_array, encode_array

_TORCH_NAMES = {
    "bfloat16": "bfloat16",
    "float16": "float16",
    "float32": "float32",
    "float64": "float64",
    "uint8": "uint8",
    "int8": "int8",
    "int16": "int16",
    "int32": "int32",
    "int64": "int64",
    "bool": "bool",
}


def torch_dtype(name: str):
    import torch

    try:
        return getattr(torch, _TORCH_NAMES[name])
    except KeyError:
        raise ValueError(f"unsupported tensor dtype {name!r}; expected one of {sorted(_TORCH_NAMES)}") from None


def encode_tensor(t, dtype: str = "bfloat16") -> tuple[bytes, list[int], str]:
    """A torch tensor -> ``(bytes, shape, dtype)``, cast to ``dtype`` first (bf16 by default)."""
    import torch

    t = t.detach().to("cpu", torch_dtype(dtype)).contiguous()
    if dtype == "bfloat16":
        arr = t.view(torch.int16).numpy().view(np.uint16)
    else:
        arr = t.numpy()
    return encode_array(arr, dtype)


def decode_tensor(data: bytes | memoryview, shape: Sequence[int], dtype: str):
    """Stored bytes -> a torch tensor of the stored dtype (bf16 stays bf16, bit-exact)."""
    import torch

    arr = decode_array(data, shape, dtype, widen_bf16=False)
    if dtype == "bfloat16":
        return torch.from_numpy(arr.view(np.int16).copy()).view(torch.bfloat16)
    return torch.from_numpy(arr.copy())
