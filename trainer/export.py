"""``sama export RUN OUT --format diffsynth|diffusers [--weights ema|raw]``: trained weights as
safetensors that other tools load.

- ``diffsynth``: every tensor under the released SAMA checkpoint's names (SAMA.md 7: DiffSynth's
  Wan layout + the three new modules), the inverse of trainer/convert.py, so the official SAMA
  inference code and DiffSynth-based tools load it with strict key matching.
  ``OUT/model.safetensors`` (or ``model-0000i-of-0000n.safetensors`` + its index past
  ``--max-shard-gb``).
- ``diffusers``: ``OUT/transformer/`` a ``WanTransformer3DModel`` folder (``config.json`` +
  ``diffusion_pytorch_model*.safetensors``), plus ``OUT/sama_modules.safetensors`` and
  ``OUT/sama_config.json``: what ``SamaTransformer.load`` and ``init_from`` read.

The checkpoint is read one output shard at a time (DCP loads only the keys asked for), so peak
memory is one shard, not the model. Written under ``OUT.tmp`` and renamed into place;
``OUT/export.json`` records the run, step, weights and dtype.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

from sama.errors import ConfigError

DIFFSYNTH_FILE = "model"
DIFFUSERS_FILE = "diffusion_pytorch_model"


def _shards(names: list[str], sizes: dict[str, int], max_bytes: int) -> list[list[str]]:
    out: list[list[str]] = [[]]
    used = 0
    for n in names:
        if out[-1] and used + sizes[n] > max_bytes:
            out.append([])
            used = 0
        out[-1].append(n)
        used += sizes[n]
    return out


def write_safetensors(
    folder: Path,
    stem: str,
    rename: dict[str, str],
    read,
    sizes: dict[str, int],
    max_bytes: int,
    metadata: dict[str, str] | None = None,
) -> list[Path]:
    """Write ``rename``'s tensors (ours -> stored name), read shard by shard with ``read``."""
    from safetensors.torch import save_file

    groups = _shards(sorted(rename), sizes, max_bytes)
    files, weight_map = [], {}
    for i, group in enumerate(groups):
        name = (
            f"{stem}.safetensors"
            if len(groups) == 1
            else (f"{stem}-{i + 1:05d}-of-{len(groups):05d}.safetensors")
        )
        tensors = {rename[k]: v.contiguous() for k, v in read(group).items()}
        save_file(tensors, str(folder / name), metadata={"format": "pt", **(metadata or {})})
        weight_map.update({rename[k]: name for k in group})
        files.append(folder / name)
    if len(groups) > 1:
        index = {"metadata": {"total_size": sum(sizes.values())}, "weight_map": weight_map}
        (folder / f"{stem}.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n")
    return files


def export_checkpoint(
    run: str | Path,
    out: str | Path,
    fmt: str,
    weights: str = "ema",
    dtype: str = "float32",
    max_shard_gb: float = 10.0,
) -> Path:
    """Export the latest checkpoint of ``run`` (or that checkpoint dir) to ``out``."""
    import torch

    from trainer import checkpoint as ckpt_io

    ckpt = ckpt_io.latest_checkpoint(run)
    if ckpt is None:
        raise ConfigError(f"{run} holds no checkpoint (checkpoints/latest or state.json)")
    model_config = json.loads((ckpt / "model_config.json").read_text())
    prefix = "ema" if weights == "ema" else "model"
    stored = {
        k[len(prefix) + 1 :]: shape
        for k, (shape, _) in ckpt_io.stored_tensors(ckpt).items()
        if k.startswith(prefix + ".")
    }
    names = list(stored)
    target = getattr(torch, dtype)
    item = torch.empty((), dtype=target).element_size()
    sizes = {n: stored[n].numel() * item for n in names}

    def read(group: list[str]) -> dict:
        return {n: t.to(target) for n, t in ckpt_io.load_full(ckpt, prefix, group).items()}

    out = Path(out)
    tmp = out.with_name(out.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    max_bytes = int(max_shard_gb * 1024**3)
    if fmt == "diffsynth":
        num_layers = int(model_config["dit"]["num_layers"])
        _write_diffsynth(tmp, ckpt, num_layers, names, read, sizes, max_bytes)
    else:
        _write_diffusers(tmp, model_config, names, read, sizes, max_bytes)
    step = ckpt_io.read_state(ckpt)["step"]
    info = dict(
        run=str(run), checkpoint=str(ckpt), step=step, weights=weights, format=fmt, dtype=dtype
    )
    (tmp / "export.json").write_text(json.dumps(info, indent=2) + "\n")
    _put_in_place(tmp, out)
    return out


def _put_in_place(tmp: Path, out: Path) -> None:
    """Rename ``tmp`` to ``out``; an existing ``out`` is removed only once replaced."""
    old = out.with_name(out.name + ".old")
    if out.exists():
        if old.exists():
            shutil.rmtree(old)
        os.rename(out, old)
    os.rename(tmp, out)
    if old.exists():
        shutil.rmtree(old)


def _write_diffsynth(tmp: Path, ckpt: Path, num_layers: int, names, read, sizes, max_bytes) -> None:
    from trainer.convert import diffsynth_names

    table = diffsynth_names(num_layers)
    missing = sorted(set(names) - set(table))
    if missing:
        raise ConfigError(f"{ckpt}: no released name for {missing[:5]}")
    write_safetensors(tmp, DIFFSYNTH_FILE, {n: table[n] for n in names}, read, sizes, max_bytes)


def _write_diffusers(tmp: Path, model_config: dict, names, read, sizes, max_bytes) -> None:
    from trainer.sama_modules import NEW_MODULES

    (tmp / "transformer").mkdir()
    dit = {n: n[len("dit.") :] for n in names if n.startswith("dit.")}
    new = {n: n for n in names if n.split(".", 1)[0] in NEW_MODULES}
    write_safetensors(tmp / "transformer", DIFFUSERS_FILE, dit, read, sizes, max_bytes)
    write_safetensors(tmp, "sama_modules", new, read, sizes, 2**62)
    config = {"_class_name": "WanTransformer3DModel", **model_config["dit"]}
    (tmp / "transformer" / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    sama = json.dumps(model_config["sama"], indent=2, sort_keys=True)
    (tmp / "sama_config.json").write_text(sama + "\n")


def export_main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="sama export",
        description="Export a training run's weights as safetensors (DiffSynth names or a "
        "diffusers WanTransformer3DModel folder + SAMA's modules).",
        epilog="Example: sama export runs/stage1 out/sama-14b --format diffsynth",
    )
    p.add_argument(
        "run", help="a `sama train` output_dir (its latest checkpoint) or a checkpoint dir"
    )
    p.add_argument("out", help="output directory (replaced if it exists)")
    p.add_argument("--format", required=True, choices=["diffsynth", "diffusers"])
    p.add_argument(
        "--weights",
        default="ema",
        choices=["ema", "raw"],
        help="the EMA (default, what the paper ships) or the raw trained weights",
    )
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    p.add_argument("--max-shard-gb", type=float, default=10.0, help="size of one output file")
    args = p.parse_args(argv)
    out = export_checkpoint(
        args.run, args.out, args.format, args.weights, args.dtype, args.max_shard_gb
    )
    print(f"sama export: wrote {out} ({args.format}, {args.weights} weights, {args.dtype})")
    return 0
