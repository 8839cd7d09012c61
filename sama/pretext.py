"""Motion-alignment pretext corruptions, applied on the fly in latent space (SAMA.md §3).

Stage 0 trains on plain clips whose *source* is a corrupted copy of the clip and whose target is
the clean clip; the prompt names the repair. The paper corrupts pixels before VAE encoding. We
corrupt the stored Wan VAE latents instead, so one precomputed clip serves every epoch with a
fresh corruption drawn from a generator derived from ``(seed, sample_id, epoch)`` (rule 6).

Shape legend (latent space, one sample): C = latent channels (16), T = latent frames
(T' = (F-1)/4 + 1 for F pixel frames), H, W = latent height/width (pixels / 8).

How the latent operators approximate the pixel ones (the Wan VAE is causal, 4x in time):

- Latent frame 0 encodes pixel frame 0 alone; latent frame t >= 1 encodes pixel frames
  4t-3..4t. All three operators leave latent frame 0 untouched, which is the paper's "frame 0
  is never masked / left out of the tube grid" rule at latent granularity.
- Cube inpainting: a run of k = round(0.3 T') latent frames is ~4k pixel frames (T'=21: 6
  latent = 24 pixel frames = round(0.3 * 81)). The blacked frames become the VAE latent of black
  frames (``black_latent``: encode a black clip, take a latent frame >= 1, same normalisation
  as the stored latents). Encoding the blacked pixel video would differ at the run's edges: the
  causal encoder carries temporal context across the boundary (the first black latent "sees"
  the last real frames, and the first real frame after the run "sees" black), which we ignore.
- Speed: every second latent frame is ~2x speed-up (81 px frames -> [::2] = 41 -> 11 latent
  frames = ceil(21 / 2), the same token count), but each kept latent frame still holds 4
  consecutive pixel frames at normal speed inside: the motion *between* latent frames doubles,
  the motion *within* one does not.
- Tube shuffle: the temporal cut of the 2x2x2 grid lies on a latent-frame boundary (4 pixel
  frames); the spatial cuts lie on latent-pixel (8 px) boundaries and, for the 480p buckets
  (latent H, W all even halves), on DiT patch (2x2) boundaries too.

A pixel-exact alternative (encode corrupted sources at build time, one fixed corruption per
stored copy) is possible but not implemented here: it multiplies storage and freezes the
corruption across epochs.
"""

from __future__ import annotations

import bisect
import functools
import itertools
import math
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import numpy as np
import torch

from sama.errors import ConfigError
from sama.rng import torch_generator


class PretextTask(StrEnum):
    """The stage-0 source transforms (SAMA.md §3)."""

    NONE = "none"
    CUBE_INPAINTING = "cube_inpainting"
    SPEED = "speed"
    TUBE_SHUFFLE = "tube_shuffle"


# Exact prefixes from SAMA.md §3 (the released inference prompts).
PROMPT_PREFIX: dict[PretextTask, str] = {
    PretextTask.NONE: "",
    PretextTask.CUBE_INPAINTING: "[Complete the missing regions in the video.]",
    PretextTask.SPEED: "[Restore the video to normal playback speed.]",
    PretextTask.TUBE_SHUFFLE: "[Restore the correct spatio-temporal order of the video segments.]",
}

_TASKS = tuple(PretextTask)
_TASK_NAMES = tuple(t.value for t in _TASKS)  # Enum.value is a slow property, read per sample
NONE_SOURCES = ("none", "identity")
SPEED_PADS = ("none", "repeat_last", "hold")


def make_prompt(task: PretextTask | str, caption: str) -> str:
    """Prefix, a space, then the caption (SAMA.md §3); the caption alone for ``none``."""
    prefix = PROMPT_PREFIX[PretextTask(task)]
    if not prefix:
        return caption
    return f"{prefix} {caption}" if caption else prefix


def all_prompts(caption: str) -> dict[PretextTask, str]:
    """Every prompt a clip may be trained with, in task order (what the text encoder embeds)."""
    return {task: make_prompt(task, caption) for task in PretextTask}


def _default_mix() -> dict[PretextTask, float]:
    # SAMA.md §3: none : cube inpainting : speed : tube shuffle = 1 : 2 : 3 : 4.
    return {
        PretextTask.NONE: 1.0,
        PretextTask.CUBE_INPAINTING: 2.0,
        PretextTask.SPEED: 3.0,
        PretextTask.TUBE_SHUFFLE: 4.0,
    }


@dataclass
class PretextConfig:
    """How stage 0 corrupts its video sources (SAMA.md §3).

    ``mix``: relative weights per task; a task missing from the mapping has weight 0.
    ``none_source``: what the ``none`` task conditions on (open in the paper). Default
    ``"identity"``: (1) at inference an editor always has a source, so a sourceless sequence is
    a layout the model never sees again; (2) copying the source is the bulk of every edit
    (content preservation), and the other 90% of samples keep the model from learning to copy
    blindly; (3) every stage-0 video sample then carries source tokens, like the image-edit
    pairs it is batched with. ``"none"`` instead trains plain text-to-video (keeps Wan's prior).
    ``speed_pad``: see :func:`speed_up`. Default ``"none"`` (the paper's source length).
    """

    mix: dict[str, float] = field(default_factory=_default_mix)
    cube_ratio: float = 0.3
    none_source: str = "identity"
    speed_pad: str = "none"

    def validate(self) -> PretextConfig:
        """Raise ``ConfigError`` naming the field and the fix; return ``self`` when valid."""
        if not isinstance(self.mix, dict):
            raise ConfigError(f"pretext.mix must be a mapping task -> weight, got {self.mix!r}")
        valid = [t.value for t in PretextTask]
        for key, weight in self.mix.items():
            if key not in valid:
                raise ConfigError(f"pretext.mix has unknown task {key!r}; use one of {valid}")
            if isinstance(weight, bool) or not isinstance(weight, int | float):
                raise ConfigError(f"pretext.mix[{key!r}] must be a number, got {weight!r}")
            if not math.isfinite(weight) or weight < 0:
                raise ConfigError(f"pretext.mix[{key!r}] must be finite and >= 0, got {weight}")
        if sum(self.mix.values()) <= 0:
            raise ConfigError("pretext.mix weights sum to 0; give at least one task a weight > 0")
        if not 0.0 < self.cube_ratio < 1.0:
            raise ConfigError(f"pretext.cube_ratio must be in (0, 1), got {self.cube_ratio}")
        if self.none_source not in NONE_SOURCES:
            raise ConfigError(
                f"pretext.none_source must be one of {NONE_SOURCES}, got {self.none_source!r}"
            )
        if self.speed_pad not in SPEED_PADS:
            raise ConfigError(
                f"pretext.speed_pad must be one of {SPEED_PADS}, got {self.speed_pad!r}"
            )
        return self

    def weights(self) -> list[tuple[PretextTask, float]]:
        """(task, weight) in ``PretextTask`` order; missing tasks weigh 0."""
        return [(t, float(self.mix.get(v, 0.0))) for t, v in zip(_TASKS, _TASK_NAMES, strict=True)]


def pretext_generator(seed: int, sample_id: object, epoch: int) -> torch.Generator:
    """The CPU generator of one sample's corruption; the ``"pretext"`` key keeps it independent
    of the sample's other streams (noise, timestep) drawn from the same triple."""
    return torch_generator(seed, sample_id, epoch, "pretext")


def sample_task(cfg: PretextConfig, generator: torch.Generator) -> PretextTask:
    """Draw one task with probability proportional to ``cfg.mix`` (one uniform draw).

    The cumulative weights and the search are plain Python (the same float64 sums and
    right-bisection as ``torch.cumsum`` + ``torch.searchsorted(right=True)``, so the same draw
    picks the same task); only the uniform number comes from the generator.
    """
    cum = list(itertools.accumulate(w for _, w in cfg.weights()))
    u = float(torch.rand((), dtype=torch.float64, generator=generator)) * cum[-1]
    return _TASKS[min(bisect.bisect_right(cum, u), len(_TASKS) - 1)]


def _randint(low: int, high: int, generator: torch.Generator) -> int:
    """Uniform int in [low, high] inclusive, drawn on CPU (latents may live on any device)."""
    return int(torch.randint(low, high + 1, (), generator=generator))


def _require_frames(latents_CTHW: torch.Tensor, what: str) -> None:
    # Frame 0 is never touched, so a 1-frame clip (an image) has nothing to corrupt. We refuse
    # rather than no-op: a no-op would pair a "restore" prompt with a clean source.
    if latents_CTHW.ndim != 4:
        raise ValueError(
            f"{what}: expected latents [C, T, H, W], got shape {tuple(latents_CTHW.shape)}"
        )
    if latents_CTHW.shape[1] < 2:
        raise ValueError(
            f"{what}: needs >= 2 latent frames (frame 0 is never corrupted), got "
            f"{latents_CTHW.shape[1]}; pretext tasks are for videos, not images"
        )


def cube_length(num_frames: int, ratio: float) -> int:
    """k = round(ratio * T') (half up), clamped to [1, T'-1] so frame 0 stays and k >= 1."""
    return max(1, min(num_frames - 1, math.floor(ratio * num_frames + 0.5)))


def cube_inpaint(
    latents_CTHW: torch.Tensor,
    black_latent: torch.Tensor,
    generator: torch.Generator,
    ratio: float = 0.3,
) -> tuple[torch.Tensor, dict[str, Any]]:
    """Black out one contiguous run of k latent frames among 1..T'-1 (SAMA.md §3).

    ``black_latent`` is ``[C]`` (broadcast over H, W) or ``[C, H, W]``. The start is uniform
    over [1, T'-k]. Returns the corrupted copy and ``{"cube_start", "cube_len"}``.
    """
    _require_frames(latents_CTHW, "cube_inpaint")
    C, T, H, W = latents_CTHW.shape
    if black_latent.shape not in ((C,), (C, H, W)):
        raise ValueError(
            f"cube_inpaint: black_latent must be [C]={C} or [C, H, W]={(C, H, W)}, "
            f"got {tuple(black_latent.shape)}"
        )
    k = cube_length(T, ratio)
    start = _randint(1, T - k, generator)
    black_C1HW = black_latent.reshape(C, 1, H, W) if black_latent.ndim == 3 else black_latent
    black_C1HW = black_C1HW.reshape(C, 1, 1, 1) if black_C1HW.ndim == 1 else black_C1HW
    if black_C1HW.dtype != latents_CTHW.dtype or black_C1HW.device != latents_CTHW.device:
        black_C1HW = black_C1HW.to(latents_CTHW.device, latents_CTHW.dtype)
    # One pass over the output (a clone then a fill would write the k frames twice).
    before, after = (
        latents_CTHW.narrow(1, 0, start),
        latents_CTHW.narrow(1, start + k, T - start - k),
    )
    out_CTHW = torch.cat((before, black_C1HW.expand(C, k, H, W), after), dim=1)
    return out_CTHW, {"cube_start": start, "cube_len": k}


def speed_up(latents_CTHW: torch.Tensor, pad: str = "none", factor: int = 2) -> torch.Tensor:
    """2x temporal acceleration: latent frames 0, 2, 4, ... (SAMA.md §3).

    ``pad`` decides the source length when it is shorter than the target:

    - ``"none"`` (default): ceil(T'/factor) frames. This is the token count the paper's pixel
      operator gives (81 -> 41 px -> 11 latent frames), and SAMA.md §1 puts source and target
      on RoPE grids that both start at frame 0, so the source simply uses the grid of its own
      frames. The trainer must then handle a source shorter than the target (pad tokens + mask,
      or group samples by length).
    - ``"repeat_last"``: the sped-up frames, then the last kept frame repeated to T' frames
      (a freeze at the end): fixed sequence length, at the cost of a content cue.
    - ``"hold"``: each kept frame repeated ``factor`` times, cut to T' (0,0,2,2,...): fixed
      length and time-aligned with the target, which makes it frame-rate restoration
      (interpolation) rather than the paper's speed restoration.
    """
    _require_frames(latents_CTHW, "speed_up")
    if pad not in SPEED_PADS:
        raise ValueError(f"speed_up: pad must be one of {SPEED_PADS}, got {pad!r}")
    if factor < 2:
        raise ValueError(f"speed_up: factor must be an int >= 2, got {factor}")
    T = latents_CTHW.shape[1]
    if pad == "hold":
        idx = (torch.arange(T) // factor) * factor
    else:
        idx = torch.arange(0, T, factor)
        if pad == "repeat_last":
            idx = torch.cat([idx, idx[-1:].expand(T - len(idx))])
    # index_select copies whole H x W frames in one pass; ``latents[:, idx]`` (advanced
    # indexing) measured 4-7x slower on [16, 5, 30, 52] and [16, 21, 60, 104] latents.
    return latents_CTHW.index_select(1, idx.to(latents_CTHW.device))


def _halves(n: int) -> tuple[slice, slice]:
    # The first half takes the extra element when n is odd; a half may be empty (n == 1).
    mid = (n + 1) // 2
    return slice(0, mid), slice(mid, n)


def tube_slices(num_frames: int, height: int, width: int) -> list[tuple[slice, slice, slice]]:
    """The 8 tubes (t, h, w slices into [T, H, W]) over frames 1..T'-1; index = 4t + 2h + w."""
    ts = [slice(s.start + 1, s.stop + 1) for s in _halves(num_frames - 1)]
    return list(itertools.product(ts, _halves(height), _halves(width)))


def _shape(s: tuple[slice, slice, slice]) -> tuple[int, ...]:
    return tuple(x.stop - x.start for x in s)


@dataclass(frozen=True)
class _TubeLayout:
    """The tube grid of one latent shape, cached: ``tube_shuffle`` runs per sample.

    The output is gathered in runs of ``block`` elements along W: half of W when W is even
    (each half row lies in one tube), else single elements. The runs form a ``[T, H, W/block]``
    grid, numbered row-major; ``runs[i]`` are tube ``i``'s run numbers in row-major order, so
    two tubes of one shape pair up run by run.
    """

    tubes: tuple[tuple[slice, slice, slice], ...]
    movable: tuple[tuple[int, ...], ...]  # classes of >= 2 tubes of one non-empty shape
    block: int
    num_runs: int
    runs: tuple[np.ndarray, ...]


@functools.lru_cache(maxsize=64)
def _tube_layout(T: int, H: int, W: int) -> _TubeLayout:
    tubes = tuple(tube_slices(T, H, W))
    classes: dict[tuple[int, ...], list[int]] = {}
    for i, s in enumerate(tubes):
        if min(_shape(s)) > 0:
            classes.setdefault(_shape(s), []).append(i)
    movable = tuple(tuple(m) for m in classes.values() if len(m) > 1)
    block = W // 2 if W % 2 == 0 else 1
    grid = np.arange(T * H * (W // block)).reshape(T, H, W // block)
    runs = tuple(grid[t, h, w.start // block : w.stop // block].ravel() for t, h, w in tubes)
    return _TubeLayout(tubes, movable, block, grid.size, runs)


def tube_shuffle(
    latents_CTHW: torch.Tensor, generator: torch.Generator
) -> tuple[torch.Tensor, list[int]]:
    """Permute the 2x2x2 tubes over latent frames 1..T'-1 (SAMA.md §3); frame 0 untouched.

    Only tubes of identical shape are swapped: with T'-1, H and W even all 8 are one class;
    an odd extent makes its two halves differ, so the tubes fall into classes that are each
    permuted uniformly on their own. Empty tubes stay put. A permutation that moves nothing
    is redrawn (source must differ from target); if no two non-empty tubes share a shape
    (T'-1, H, W all odd) there is no valid shuffle and ``ValueError`` is raised.
    Returns the corrupted copy and ``perm``: output tube ``i`` holds input tube ``perm[i]``.
    """
    _require_frames(latents_CTHW, "tube_shuffle")
    C, T, H, W = latents_CTHW.shape
    layout = _tube_layout(T, H, W)
    if not layout.movable:
        raise ValueError(
            f"tube_shuffle: no two tubes share a shape for T'={T}, H={H}, W={W}; "
            "use an even number of latent frames after frame 0 or even H/W"
        )
    identity = list(range(len(layout.tubes)))
    perm = identity
    while perm == identity:
        perm = list(identity)
        for members in layout.movable:
            order = torch.randperm(len(members), generator=generator).tolist()
            for slot, j in zip(members, order, strict=True):
                perm[slot] = members[j]
    # One gather builds the output: ``plan[r]`` is the input run that output run ``r`` copies
    # (identity outside the moved tubes), and ``index_select`` copies every run once. A clone
    # plus slice copies per tube measured 2.5-5x slower (strided copies of short rows).
    moved = [slot for slot, src in enumerate(perm) if slot != src]
    plan = np.arange(layout.num_runs)
    plan[np.concatenate([layout.runs[s] for s in moved])] = np.concatenate(
        [layout.runs[perm[s]] for s in moved]
    )
    index = torch.from_numpy(plan)
    if latents_CTHW.device.type != "cpu":
        index = index.to(latents_CTHW.device)
    runs_CRB = latents_CTHW.reshape(C, layout.num_runs, layout.block)
    return runs_CRB.index_select(1, index).view(C, T, H, W), perm


def apply_pretext(
    latents_CTHW: torch.Tensor,
    task: PretextTask | str,
    black_latent: torch.Tensor | None,
    generator: torch.Generator,
    cfg: PretextConfig,
    *,
    copy_identity: bool = True,
) -> tuple[torch.Tensor | None, dict[str, Any]]:
    """The source for one stage-0 video sample (the target is always ``latents_CTHW``).

    Returns ``(source_CTHW or None, info)``; ``None`` only for ``none`` with
    ``cfg.none_source == "none"``. ``info`` is JSON-friendly: ``task``, ``source_frames``
    and the task's parameters (``cube_start``/``cube_len``, ``speed_factor``/``speed_pad``,
    ``perm``). ``black_latent`` is needed only for cube inpainting. Every other source is a new
    tensor; the ``none`` task's identity source is a copy too unless ``copy_identity=False``,
    which returns ``latents_CTHW`` itself (for callers that never write into either tensor).
    """
    task = PretextTask(task)
    info: dict[str, Any] = {"task": task.value}
    if task is PretextTask.NONE:
        source = None
        if cfg.none_source == "identity":
            source = latents_CTHW.clone() if copy_identity else latents_CTHW
    elif task is PretextTask.CUBE_INPAINTING:
        if black_latent is None:
            raise ValueError("apply_pretext: cube_inpainting needs the black-frame latent")
        source, extra = cube_inpaint(latents_CTHW, black_latent, generator, cfg.cube_ratio)
        info.update(extra)
    elif task is PretextTask.SPEED:
        source = speed_up(latents_CTHW, pad=cfg.speed_pad)
        info.update(speed_factor=2, speed_pad=cfg.speed_pad)
    else:
        source, perm = tube_shuffle(latents_CTHW, generator)
        info["perm"] = perm
    info["source_frames"] = 0 if source is None else int(source.shape[1])
    return source, info


def make_pretext_sample(
    latents_CTHW: torch.Tensor,
    caption: str,
    black_latent: torch.Tensor | None,
    cfg: PretextConfig,
    seed: int,
    sample_id: object,
    epoch: int,
    *,
    copy_identity: bool = True,
) -> tuple[torch.Tensor | None, str, dict[str, Any]]:
    """Task, source and prompt for one sample, reproducible from ``(seed, sample_id, epoch)``.

    ``copy_identity``: see :func:`apply_pretext`.
    """
    generator = pretext_generator(seed, sample_id, epoch)
    task = sample_task(cfg, generator)
    source, info = apply_pretext(
        latents_CTHW, task, black_latent, generator, cfg, copy_identity=copy_identity
    )
    return source, make_prompt(task, caption), info
