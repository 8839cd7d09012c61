"""``init_from``: the first weights of a run, from wherever they were published, and a record of
which parameter came from where.

Three kinds of source (``init_format=auto`` tells them apart by their files):

- ``run``: a previous ``sama train`` output or one of its checkpoints (``checkpoints/latest``,
  ``state.json``): its EMA or raw weights (``init_weights``), read shard by shard with
  ``torch.distributed.checkpoint`` on any world size (trainer/checkpoint.py);
- ``diffusers``: a ``WanTransformer3DModel`` folder (``config.json`` +
  ``diffusion_pytorch_model*.safetensors``), a pipeline folder with ``transformer/``, or a
  ``sama export --format diffusers`` folder (``transformer/`` + ``sama_modules.safetensors``);
- ``diffsynth``: a released SAMA or Wan2.1 checkpoint under the original (DiffSynth) names
  (SAMA.md 7): one ``.safetensors`` file, an index, or a folder; renamed by trainer/convert.py.

The reference loads released weights with ``strict=False`` over the Wan2.1 base; the same
semantics here, made explicit: a model parameter the source has is **loaded** (its shape must
match, else the run stops), one it lacks is **kept** (the ``dit.model_id`` base weight, or the
seeded fresh init of SAMA's new modules), and a source tensor with no model parameter is
**ignored**. All three lists go to the run log and ``OUTPUT/init_from.json``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from sama.errors import ConfigError
from trainer.sama_modules import NEW_MODULES
from trainer.weights import (
    SafetensorsIndex,
    Source,
    WeightsError,
    diffusers_weight_files,
    file_source,
)

SAMA_MODULES_FILE = "sama_modules.safetensors"
FORMATS = ("run", "diffusers", "diffsynth")


@dataclass
class InitReport:
    """What ``init_from`` put where (parameter names are the model's own)."""

    source: str
    format: str
    loaded: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)  # source names, as stored

    @property
    def new_modules(self) -> dict[str, str]:
        """SAMA's modules (not in the Wan base): ``loaded``, ``partly loaded`` or ``fresh``."""
        out = {}
        for m in NEW_MODULES:
            got = any(n.split(".", 1)[0] == m for n in self.loaded)
            kept = any(n.split(".", 1)[0] == m for n in self.kept)
            out[m] = ("partly loaded" if kept else "loaded") if got else "fresh"
        return out

    def lines(self) -> list[str]:
        new = ", ".join(f"{m} {how}" for m, how in self.new_modules.items())
        out = [
            f"init_from {self.source} ({self.format}): {len(self.loaded)} loaded, "
            f"{len(self.kept)} kept from the base, {len(self.ignored)} ignored",
            f"  new modules: {new}",
        ]
        if self.kept:
            out.append(f"  kept (base / fresh init): {', '.join(self.kept)}")
        if self.ignored:
            out.append(f"  ignored (not in the model): {', '.join(self.ignored)}")
        return out

    def write(self, path: Path) -> None:
        data = {**asdict(self), "new_modules": self.new_modules}
        path.write_text(json.dumps(data, indent=2) + "\n")


def detect_format(path: str | Path) -> str:
    """``run``, ``diffusers`` or ``diffsynth`` from what ``path`` holds (see module docstring)."""
    p = Path(path).expanduser()
    if not p.exists():
        raise ConfigError(f"init_from={str(path)!r} does not exist")
    if p.is_dir():
        if (p / "state.json").is_file() or (p / "checkpoints").is_dir() or (p / "latest").is_file():
            return "run"
        if (p / "transformer" / "config.json").is_file() or (p / "config.json").is_file():
            return "diffusers"
    return "diffsynth"


def _diffusers_folder(p: Path) -> tuple[Path, Path | None]:
    transformer = p / "transformer" if (p / "transformer" / "config.json").is_file() else p
    modules = p / SAMA_MODULES_FILE
    return transformer, modules if modules.is_file() else None


def file_sources(
    path: str | Path, fmt: str, model_names: list[str], num_layers: int
) -> tuple[dict[str, Source], InitReport]:
    """Sources for the parameters a ``diffusers`` or ``diffsynth`` checkpoint has, and the
    report (``kept`` = model parameters it lacks)."""
    p = Path(path).expanduser()
    report = InitReport(str(path), fmt)
    try:
        if fmt == "diffusers":
            transformer, modules = _diffusers_folder(p)
            stored: dict[str, tuple[SafetensorsIndex, str]] = {}
            index = SafetensorsIndex(diffusers_weight_files(transformer))
            stored.update({f"dit.{k}": (index, k) for k in index.entries})
            if modules is not None:
                extra = SafetensorsIndex([modules])
                stored.update({k: (extra, k) for k in extra.entries})
        else:
            from trainer.convert import map_released_names_lenient

            index = SafetensorsIndex.of(p)
            mapping, report.ignored = map_released_names_lenient(index.entries, num_layers)
            stored = {ours: (index, key) for key, ours in mapping.items()}
    except (WeightsError, ValueError, FileNotFoundError) as e:
        raise ConfigError(f"init_from={str(path)!r} ({fmt}): {e}") from None
    names = set(model_names)
    if fmt == "diffusers":
        report.ignored = sorted(k for k in stored if k not in names)
    sources = {n: file_source(*stored[n]) for n in model_names if n in stored}
    report.loaded = [n for n in model_names if n in sources]
    report.kept = [n for n in model_names if n not in sources]
    if not report.loaded:
        raise ConfigError(
            f"init_from={str(path)!r} ({fmt}) has none of this model's parameters; check "
            "init_format and that it is a Wan2.1 T2V / SAMA checkpoint"
        )
    return sources, report
