"""Sharded checkpoints (``torch.distributed.checkpoint``) that resume on any world size.

A checkpoint is a directory ``OUTPUT/checkpoints/step_{step:08d}/``:

- DCP files (``.metadata``, ``__{r}_0.distcp``): every tensor of the run under flat keys,
  ``model.<param>``, ``ema.<param>``, ``optim.<param>.<exp_avg|exp_avg_sq|step>``. Each rank
  writes what it holds (FSDP: its rows; replicated tensors once) and a load reads exactly the
  rows the loading rank holds, so a resume reshards onto another world size or strategy and no
  rank ever materialises the full state (at 14B: ~225 GB of weights, EMA and AdamW moments);
- ``rank{r}.json``: rank r's loader position (with its epoch length, for resharding) and RNG
  states; ``config.yaml``, ``model_config.json`` (the DiT and SAMA configs, for ``sama
  export``); ``state.json``: step, world size, EMA update count, config hash, written last.

Only tensors go through DCP: it would pickle anything else, and read it back with
``torch.load(weights_only=False)``. DCP's own ``.metadata`` is a pickle of its dataclasses; it is
read with an unpickler that admits only those classes (``SafeReader``). Tensor data is read by
DCP with ``torch.load(weights_only=True)``.

Atomic and never silently lost: the directory is written as ``.tmp-step_N`` (every file and the
directory fsynced), renamed into place (an existing ``step_N`` is first renamed aside and
removed only once the new one is in place), and ``checkpoints/latest`` is replaced atomically
last. A resume reads only what ``latest`` names; a ``latest`` naming a missing or partial
directory is an error that names the newest complete checkpoint instead of a silent restart.
"""

from __future__ import annotations

import base64
import json
import os
import pickle
import random
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from sama.config import config_hash, dump_config
from sama.errors import ConfigError

CHECKPOINTS = "checkpoints"
LATEST = "latest"
FORMAT_VERSION = 2
METADATA = ".metadata"


@dataclass
class RankInfo:
    rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


class CheckpointError(ConfigError):
    """A checkpoint that cannot be resumed from, and what to do instead."""


def step_dir_name(step: int) -> str:
    return f"step_{step:08d}"


# ---- durable files ---------------------------------------------------------------------------


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_durable(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` via a temp file: fsync, rename, fsync the directory."""
    tmp = path.with_name(f".tmp-{path.name}")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


# ---- RNG (JSON, no pickle) -------------------------------------------------------------------


def _b64(t: torch.Tensor) -> str:
    return base64.b64encode(t.numpy().tobytes()).decode()


def _unb64(s: str) -> torch.Tensor:
    return torch.frombuffer(bytearray(base64.b64decode(s)), dtype=torch.uint8).clone()


def rng_state() -> dict[str, Any]:
    version, internal, gauss = random.getstate()
    state: dict[str, Any] = {
        "torch": _b64(torch.get_rng_state()),
        "python": [version, list(internal), gauss],
    }
    if torch.cuda.is_available():
        state["cuda"] = [_b64(s) for s in torch.cuda.get_rng_state_all()]
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(_unb64(state["torch"]))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([_unb64(s) for s in state["cuda"]])


# ---- finding checkpoints ---------------------------------------------------------------------


def read_state(ckpt: Path) -> dict[str, Any]:
    return json.loads((Path(ckpt) / "state.json").read_text())


def is_complete(ckpt: Path) -> bool:
    """``state.json`` (written last) readable, DCP metadata and every rank's file present."""
    try:
        state = read_state(ckpt)
    except (OSError, ValueError):
        return False
    if state.get("format") != FORMAT_VERSION or not (ckpt / METADATA).is_file():
        return False
    return all((ckpt / f"rank{r}.json").is_file() for r in range(int(state["world_size"])))


def complete_checkpoints(root: Path) -> list[Path]:
    return sorted(p for p in root.glob("step_*") if p.is_dir() and is_complete(p))


def _newest_hint(root: Path) -> str:
    done = complete_checkpoints(root)
    aside = [p for p in sorted(root.glob(".old-step_*")) if is_complete(p)]
    moved = (
        f" ({aside[-1].name} is a complete checkpoint moved aside by an interrupted re-save: "
        f"rename it to {aside[-1].name.removeprefix('.old-')} to use it)"
        if aside
        else ""
    )
    if not done:
        return f"there is no complete checkpoint{moved}: set resume=never to start over"
    return (
        f"the newest complete checkpoint is {done[-1]}{moved}: write its name into "
        f"{root / LATEST} to resume from it, or set resume=never to start over"
    )


def latest_checkpoint(path: str | Path) -> Path | None:
    """The checkpoint named by ``PATH/checkpoints/latest`` (``PATH`` may also be a run's
    ``checkpoints`` directory or a ``step_N`` directory itself); None if no checkpoint was ever
    completed there. Raises ``CheckpointError`` when ``latest`` names nothing complete, or
    complete checkpoints exist but ``latest`` does not."""
    p = Path(path)
    if (p / "state.json").is_file():
        if not is_complete(p):
            raise CheckpointError(f"{p} is an incomplete or older-format checkpoint")
        return p
    for root in (p / CHECKPOINTS, p):
        pointer = root / LATEST
        if pointer.is_file():
            target = root / pointer.read_text().strip()
            if is_complete(target):
                return target
            raise CheckpointError(
                f"{pointer} names {target.name}, which is missing or incomplete; "
                + _newest_hint(root)
            )
        if root.is_dir() and complete_checkpoints(root):
            raise CheckpointError(
                f"{root} holds checkpoints but no {LATEST}; " + _newest_hint(root)
            )
    return None


# ---- DCP I/O ---------------------------------------------------------------------------------


_METADATA_CLASSES = {
    "torch.distributed.checkpoint.metadata": {
        "Metadata",
        "TensorStorageMetadata",
        "BytesStorageMetadata",
        "TensorProperties",
        "ChunkStorageMetadata",
        "MetadataIndex",
        "StorageMeta",
        "_MEM_FORMAT_ENCODING",
    },
    "torch.distributed.checkpoint.filesystem": {"_StorageInfo"},
    "torch.serialization": {"_get_layout"},
    "torch": {"Size"},
    "pathlib": {"PosixPath", "PurePosixPath", "WindowsPath", "PureWindowsPath"},
    "collections": {"OrderedDict"},
}


class _MetadataUnpickler(pickle.Unpickler):
    """Admits DCP's metadata dataclasses, ``torch.Size``, dtypes and paths; nothing else."""

    def find_class(self, module: str, name: str):
        if name in _METADATA_CLASSES.get(module, ()) or (
            module == "torch" and isinstance(getattr(torch, name, None), torch.dtype)
        ):
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"checkpoint metadata refers to {module}.{name}: refused")


def safe_reader(path: Path):
    """A DCP ``FileSystemReader`` whose ``.metadata`` goes through the allow-list unpickler."""
    from torch.distributed.checkpoint import FileSystemReader

    class SafeReader(FileSystemReader):
        def read_metadata(self, *args: Any, **kwargs: Any):
            from torch.distributed.checkpoint.metadata import StorageMeta

            rank = kwargs.get("rank")
            with self.fs.create_stream(self._get_metadata_path(rank), "rb") as f:
                metadata = _MetadataUnpickler(f).load()
            if getattr(metadata, "storage_meta", None) is None:
                metadata.storage_meta = StorageMeta()
            metadata.storage_meta.load_id = self.load_id
            return metadata

    return SafeReader(str(path))


def stored_tensors(ckpt: Path) -> dict[str, tuple[torch.Size, torch.dtype]]:
    """Every key of a checkpoint with its full shape and dtype (from the metadata)."""
    from torch.distributed.checkpoint.metadata import TensorStorageMetadata

    md = safe_reader(ckpt).read_metadata()
    return {
        k: (v.size, v.properties.dtype)
        for k, v in md.state_dict_metadata.items()
        if isinstance(v, TensorStorageMetadata)
    }


def load_tensors(ckpt: Path, state: dict[str, torch.Tensor], distributed: bool) -> None:
    """Fill ``state``'s tensors (plain or DTensor shards) in place from ``ckpt``."""
    import torch.distributed.checkpoint as dcp

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*assuming the intent is to load in a single")
        dcp.load(state, storage_reader=safe_reader(ckpt), no_dist=not distributed)


def load_full(ckpt: Path, prefix: str, names: list[str] | None = None) -> dict[str, torch.Tensor]:
    """Full CPU tensors under ``prefix.`` (names without it), in one process: tests, export."""
    meta = stored_tensors(ckpt)
    keys = [k for k in meta if k.startswith(prefix + ".")]
    if names is not None:
        wanted = {f"{prefix}.{n}" for n in names}
        keys = [k for k in keys if k in wanted]
    state = {k: torch.empty(meta[k][0], dtype=meta[k][1]) for k in keys}
    load_tensors(ckpt, state, distributed=False)
    return {k[len(prefix) + 1 :]: v for k, v in state.items()}


# ---- saving ----------------------------------------------------------------------------------


@dataclass
class SaveRequest:
    """One checkpoint of one rank: its tensors (sharded), its own JSON state, the run's."""

    step: int
    tensors: dict[str, torch.Tensor]
    rank_state: dict[str, Any]
    state: dict[str, Any]
    config: Any
    model_config: dict[str, Any]


@dataclass
class _Pending:
    future: Any
    tmp: Path
    final: Path
    request: SaveRequest


class Checkpointer:
    """Writes checkpoints (collectively: every rank calls ``save`` at the same steps)."""

    def __init__(
        self,
        output_dir: str | Path,
        info: RankInfo,
        keep_last: int = 0,
        async_save: bool = False,
        distributed: bool = False,
        async_group=None,
    ) -> None:
        self.root = Path(output_dir) / CHECKPOINTS
        self.info, self.keep_last = info, keep_last
        self.async_save, self.distributed = async_save, distributed
        self.async_group = async_group  # a gloo group of its own for the background writes
        self.pending: _Pending | None = None

    def _barrier(self) -> None:
        if self.distributed:
            torch.distributed.barrier()

    def save(self, req: SaveRequest) -> Path:
        """Write ``step_N`` (in the background with ``async_save``; then it is finalised by
        the next ``save`` or by ``wait``). Returns its final path."""
        import torch.distributed.checkpoint as dcp
        from torch.distributed.checkpoint import FileSystemWriter

        self.wait()
        final = self.root / step_dir_name(req.step)
        tmp = self.root / f".tmp-{final.name}"
        if self.info.is_main:
            if tmp.exists():
                shutil.rmtree(tmp)
            tmp.mkdir(parents=True)
        self._barrier()
        write_durable(tmp / f"rank{self.info.rank}.json", json.dumps(req.rank_state))
        writer = FileSystemWriter(str(tmp), sync_files=True)
        kwargs = dict(storage_writer=writer, no_dist=not self.distributed)
        with warnings.catch_warnings():
            warnings.filterwarnings(
                "ignore", message=".*assuming the intent is to save in a single"
            )
            if self.async_save:  # staged to host memory before it returns, written in a thread
                future = dcp.async_save(req.tensors, process_group=self.async_group, **kwargs)
                future = getattr(future, "upload_completion", future)
            else:
                dcp.save(req.tensors, **kwargs)
                future = None
        self.pending = _Pending(future, tmp, final, req)
        if not self.async_save:
            self.wait()
        return final

    def wait(self) -> None:
        """Finish the save in flight: every rank's writes done, then rank 0 puts it in place."""
        pending, self.pending = self.pending, None
        if pending is None:
            return
        if pending.future is not None:
            pending.future.result()
        self._barrier()
        if self.info.is_main:
            self._finalize(pending)
        self._barrier()

    def _finalize(self, p: _Pending) -> None:
        req = p.request
        dump_config(req.config, p.tmp / "config.yaml")
        write_durable(p.tmp / "model_config.json", json.dumps(req.model_config, indent=2))
        state = {
            "format": FORMAT_VERSION,
            "step": req.step,
            "world_size": self.info.world_size,
            "config_hash": config_hash(req.config),
            **req.state,
        }
        write_durable(p.tmp / "state.json", json.dumps(state, indent=2) + "\n")
        aside = self.root / f".old-{p.final.name}"
        if p.final.exists():  # a re-run reached the same step: keep the old one until replaced
            if aside.exists():
                shutil.rmtree(aside)
            os.rename(p.final, aside)
        os.rename(p.tmp, p.final)
        fsync_dir(self.root)
        write_durable(self.root / LATEST, p.final.name + "\n")
        if aside.exists():  # superseded by the one now in place
            shutil.rmtree(aside)
        self._prune()

    def _prune(self) -> None:
        if self.keep_last <= 0:
            return
        for old in complete_checkpoints(self.root)[: -self.keep_last]:
            shutil.rmtree(old)


def read_rank_state(ckpt: Path, rank: int) -> dict[str, Any]:
    """Rank ``rank``'s JSON state; on a resharded resume, ranks beyond the saved world size
    read rank 0's (every rank saves the same loader position and epoch length)."""
    saved = int(read_state(ckpt)["world_size"])
    return json.loads((ckpt / f"rank{rank if rank < saved else 0}.json").read_text())
