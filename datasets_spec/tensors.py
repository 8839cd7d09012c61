"""Tensors as raw little-endian bytes + shape + dtype columns.

A tensor column ``x`` is stored as three Arrow columns: ``x`` (``large_binary``, the raw
little-endian bytes, C order), ``x_shape`` (``list<int32>``) and ``x_dtype`` (``string``).
Measured ~10 GB/s to decode vs 0.3-0.45 GB/s for Arrow tensor extension types, and it survives
``datasets`` (whose numpy format upcasts float16 and cannot round-trip fixed-shape tensors).

bfloat16 has no numpy dtype: it is stored as its 16-bit pattern and decoded here either to its
raw ``uint16`` pattern or widened exactly to float32 (bf16 is the top half of a float32).
No torch here; ``sama.tensors`` converts to and from torch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

# dtype name in the *_dtype column -> numpy little-endian storage dtype
STORAGE_DTYPES: dict[str, np.dtype] = {
    "bfloat16": np.dtype("<u2"),
    "float16": np.dtype("<f2"),
    "float32": np.dtype("<f4"),
    "float64": np.dtype("<f8"),
    "uint8": np.dtype("u1"),
    "int8": np.dtype("i1"),
    "int16": np.dtype("<i2"),
    "int32": np.dtype("<i4"),
    "int64": np.dtype("<i8"),
    "bool": np.dtype("?"),
}


class TensorDecodeError(ValueError):
    """Stored bytes do not match the stored shape and dtype."""


def itemsize(dtype: str) -> int:
    return _storage(dtype).itemsize


def _storage(dtype: str) -> np.dtype:
    try:
        return STORAGE_DTYPES[dtype]
    except KeyError:
        raise TensorDecodeError(
            f"unknown tensor dtype {dtype!r}; expected one of {sorted(STORAGE_DTYPES)}"
        ) from None


def expected_nbytes(shape: Sequence[int], dtype: str) -> int:
    """Bytes a tensor of ``shape`` and ``dtype`` holds, in Python ints: a numpy int64 product
    wraps (``[65536] * 4`` gives 0) and would let a hostile shape pass as an empty tensor."""
    dims = [int(s) for s in shape]
    if any(d < 0 for d in dims):
        raise TensorDecodeError(f"shape {dims} has a negative dimension")
    return math.prod(dims) * itemsize(dtype)


def float32_to_bf16_bits(x: np.ndarray) -> np.ndarray:
    """Round-to-nearest-even float32 -> bfloat16 bit patterns (uint16), as torch does."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    u = x.view(np.uint32).astype(np.uint64)
    rounding = ((u >> 16) & 1) + 0x7FFF
    out = ((u + rounding) >> 16).astype(np.uint16)
    nan = np.isnan(x)
    if nan.any():
        out[nan] = 0x7FC0
    return out


def bf16_bits_to_float32(bits: np.ndarray) -> np.ndarray:
    """Exact widening of bfloat16 bit patterns to float32."""
    return (bits.astype(np.uint32) << 16).view(np.float32)


def encode_array(arr: np.ndarray, dtype: str | None = None) -> tuple[bytes, list[int], str]:
    """Encode a numpy array as ``(bytes, shape, dtype)``.

    ``dtype`` is the stored dtype name; ``"bfloat16"`` converts float arrays (rounding to
    nearest even) or takes uint16 arrays as ready bit patterns. Default: the array's own dtype.
    """
    arr = np.asarray(arr)
    if dtype is None:
        dtype = arr.dtype.name
    storage = _storage(dtype)
    if dtype == "bfloat16" and arr.dtype != np.uint16:
        data = float32_to_bf16_bits(arr.astype(np.float32, copy=False))
    else:
        data = np.ascontiguousarray(arr, dtype=storage)
    return data.tobytes(order="C"), [int(s) for s in arr.shape], dtype


def decode_array(data: bytes | memoryview, shape: Sequence[int], dtype: str, *, widen_bf16: bool = True) -> np.ndarray:
    """Decode stored bytes back to an array of ``shape``.

    bfloat16 decodes to float32 (exact) by default, or to its uint16 bit pattern with
    ``widen_bf16=False``. Raises ``TensorDecodeError`` if the byte length is wrong.
    """
    storage = _storage(dtype)
    want = expected_nbytes(shape, dtype)
    if len(data) != want:
        raise TensorDecodeError(
            f"tensor has {len(data)} bytes but shape {list(shape)} of {dtype} needs {want}"
        )
    arr = np.frombuffer(data, dtype=storage).reshape(tuple(shape))
    if dtype == "bfloat16" and widen_bf16:
        return bf16_bits_to_float32(arr)
    return arr
