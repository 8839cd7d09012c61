"""Rows of a shard, read when a batch needs them: row groups (through the node-local cache when
there is one) decoded into samples whose tensors are zero-copy views of the Arrow buffers.

The shapes were checked at start-up (``trainer/shard_index.py``); each cell's byte length is
checked again here against its shape before a view is made.

Legend: C latent channels, T latent frames, H/W latent height/width, N anchor frames,
K tokens per anchor (65), D SigLIP width, L text tokens, E text width.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from datasets_spec import READABLE
from datasets_spec.tensors import TensorDecodeError, expected_nbytes, itemsize
from trainer.shard_index import TENSORS, ShardInfo

_EMBEDS = ("text_embeds", "text_embeds_shape", "text_embeds_dtype")
_SMALL = (
    "clip_id",
    "pair_id",
    "caption",
    "instruction",
    "corpus",
    "num_frames",
    "bucket_width",
    "bucket_height",
    "text_prompts",
    "text_lengths",
)


def tensor_view(tbl: pa.Table, name: str, i: int, small: dict):
    """Zero-copy torch view of a stored tensor cell (keeps the row group's buffer alive)."""
    import torch

    from sama.tensors import torch_dtype

    cell = tbl.column(name)[i]
    if not cell.is_valid:
        return None
    buf, shape, dtype = cell.as_buffer(), small[f"{name}_shape"][i], small[f"{name}_dtype"][i]
    if buf.size != math.prod(shape) * itemsize(dtype):
        raise TensorDecodeError(
            f"column {name!r} row {i}: {buf.size} bytes, but shape {shape} "
            f"of {dtype} needs {expected_nbytes(shape, dtype)}"
        )
    if not buf.size:
        return torch.empty(shape, dtype=torch_dtype(dtype))
    return torch.frombuffer(buf, dtype=torch_dtype(dtype)).view(shape)


def own(sample: dict) -> dict:
    """Copy the sample's tensors out of the row group's buffers (so those can be freed)."""
    import torch

    for k, v in sample.items():
        if isinstance(v, torch.Tensor):
            sample[k] = v.clone()
        elif isinstance(v, list) and v and isinstance(v[0], torch.Tensor):
            sample[k] = [t.clone() for t in v]
    return sample


def decode_rows(
    tbl: pa.Table,
    rows: Sequence[int],
    kind: str,
    load_text_embeds: bool = True,
    max_text_tokens: int = 512,
) -> dict[int, dict]:
    """Row positions of one row group -> sample dicts.

    Keys: ``kind`` (clip|pair), ``sample_id``, ``bucket`` (w, h), ``num_frames``, ``media``
    (image|video), ``target_latents`` [C,T,H,W], ``anchor_tokens`` [N,K,D], ``text_prompts``
    (list or None), ``text_embeds`` (one [L_i, E] per prompt, cut to ``max_text_tokens``; own
    memory, as they stay lists in a batch; or None); clips add ``caption``; pairs add
    ``source_latents`` [C,T,H,W], ``instruction``, ``corpus``. The other tensors are views of
    ``tbl``'s buffers (see ``own``).
    """
    import torch

    tensors = TENSORS[kind]
    small_names = [c for c in tbl.column_names if c not in tensors and c != "text_embeds"]
    small = {c: tbl.column(c).to_pylist() for c in small_names}
    out = {}
    for i in rows:
        s: dict[str, Any] = {
            "kind": kind[:-1],
            "bucket": (small["bucket_width"][i], small["bucket_height"][i]),
            "num_frames": small["num_frames"][i],
        }
        if kind == "clips":
            s.update(
                sample_id=small["clip_id"][i],
                caption=small["caption"][i],
                target_latents=tensor_view(tbl, "latents", i, small),
            )
        else:
            s.update(
                sample_id=small["pair_id"][i],
                instruction=small["instruction"][i],
                corpus=small["corpus"][i],
                source_latents=tensor_view(tbl, "source_latents", i, small),
                target_latents=tensor_view(tbl, "target_latents", i, small),
            )
        s["media"] = "video" if s["target_latents"].shape[1] > 1 else "image"
        s["anchor_tokens"] = tensor_view(tbl, "anchor_tokens", i, small)
        s["text_prompts"] = small["text_prompts"][i]
        s["text_embeds"] = None
        if load_text_embeds and s["text_prompts"] is not None:
            embeds_LE = tensor_view(tbl, "text_embeds", i, small)
            lengths = small["text_lengths"][i]
            if embeds_LE is not None:
                if lengths is None or sum(lengths) != embeds_LE.shape[0]:
                    raise ValueError(
                        f"{s['sample_id']}: text_lengths {lengths} do not add up "
                        f"to the {embeds_LE.shape[0]} rows of text_embeds"
                    )
                s["text_embeds"] = [
                    e[:max_text_tokens].clone() for e in torch.split(embeds_LE, lengths)
                ]
        out[i] = s
    return out


def read_columns(kind: str, load_text_embeds: bool = True) -> list[str]:
    """The columns a sample needs, in schema order (not the provenance-only ones; every
    readable version of the kind has them)."""
    want = set(_SMALL) | (set(_EMBEDS) if load_text_embeds else set())
    for t in TENSORS[kind]:
        want |= {t, f"{t}_shape", f"{t}_dtype"}
    return [c for c in READABLE[kind][0].column_names if c in want]


def read_row_group(shard: ShardInfo, row_group: int, columns: list[str]) -> pa.Table:
    try:
        f = shard.open()
    except FileNotFoundError:  # the cached copy was evicted between its check and the open
        f = shard.open()
    with f:
        pf = pq.ParquetFile(f, metadata=shard.metadata)
        if shard.metadata is None:
            shard.metadata = pf.metadata  # a shard from the cached index: parse its footer once
        return pf.read_row_group(row_group, columns=columns)
