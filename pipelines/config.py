"""Typed config of ``sama build`` (CONVENTIONS.md rule 4): defaults here, YAML holds what differs.

``load_build_config(path, overrides)`` = defaults <- YAML <- ``a.b=value`` overrides, then every
section's ``validate()``; encoder model ids may say ``{models_dir}/wan`` and are resolved against
the top-level ``models_dir`` (the demo and the tests point it at a tiny-model bundle).

Which fields change the rows (``output_fingerprint``) and which only change how the build runs
(``engine``, shard sizes, where the inputs/outputs live) matters for resume: a re-run whose
fingerprint differs refuses to write into the same output (``pipelines/engine/resume.py``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pipelines.engine.config import BudgetConfig, EngineConfig, OutputConfig
from pipelines.pairs.config import PairJudgeConfig, PairsConfig
from sama.captioner import CaptionConfig
from sama.config import check, load_config, to_dict
from sama.encoders.config import SiglipConfig, TextEncoderConfig, VAEConfig
from sama.errors import ConfigError
from sama.filters import FilterConfig
from sama.video.clean_clip import GuardConfig
from sama.video.frames import is_valid_num_frames
from sama.video.shots import ShotConfig

VIDEO_EXTENSIONS = [".mp4", ".mkv", ".webm", ".mov", ".avi", ".m4v", ".mpg", ".mpeg", ".ts"]
MANIFEST_EXTENSIONS = (".csv", ".jsonl", ".json", ".parquet")


@dataclass
class InputConfig:
    """Where the videos are: a directory (searched recursively), a glob, a single video, or a
    manifest (``.csv``/``.jsonl``/``.parquet``) with a ``video`` column and optional ``caption``
    and ``id``; any fsspec URI. Relative manifest paths are relative to the manifest."""

    uri: str = ""
    # clips: raw videos -> clips/v1; pairs: an edit-pair manifest (read as the `pairs` section
    # says) -> pairs/v1. One root may hold both builds (pipelines/engine/root.py)
    kind: Literal["clips", "pairs"] = "clips"
    extensions: list[str] = field(default_factory=lambda: list(VIDEO_EXTENSIONS))
    video_column: str = "video"
    caption_column: str = "caption"
    id_column: str = "id"
    limit: int = 0  # 0 = every input; N = the first N (sorted listing / manifest order)
    storage_options: dict[str, Any] = field(default_factory=dict)  # passed to fsspec
    # what manifest entries may name (sama.confine): URI prefixes / local folders, and schemes;
    # empty = the manifest's own folder and scheme. A refused entry is a `not_allowed` error row
    allowed_roots: list[str] = field(default_factory=list)
    allowed_schemes: list[str] = field(default_factory=list)

    def validate(self) -> None:
        check(bool(self.uri), "input.uri is empty; set input.uri=DIR, a glob or a manifest")
        check(self.limit >= 0, f"input.limit={self.limit} must be >= 0 (0 = all)")
        bad = [e for e in self.extensions if not e.startswith(".")]
        check(not bad, f"input.extensions {bad} must start with a dot, e.g. '.mp4'")


@dataclass
class ClipsConfig:
    """Clips cut from shots (SAMA.md §1): the first F = 4k+1 frames, 480p aspect buckets."""

    resolution: int = 480  # bucket table scaled by resolution / 480 (sides multiples of 16)
    num_frames: int = 81
    long_shot: Literal["first", "multi"] = "first"  # one clip per shot, or back-to-back clips
    max_clips_per_shot: int = 0  # multi only; 0 = as many as fit
    # shots shorter than num_frames but at least min_frames give one shorter 4k+1 clip;
    # 0 = min_frames = num_frames (only full-length clips)
    min_frames: int = 0
    # a gap between two clips longer than this is skipped by seeking instead of decoding
    seek_gap_frames: int = 240
    # single_pass: one decode per video feeds the shot detector and the clips (CutClips);
    # two_pass: DetectShots, then MakeClips decodes the clip frames again. auto = single_pass
    # where it applies (long_shot=first, no shots.max_shot_frames, the PyAV backend)
    decode: Literal["auto", "single_pass", "two_pass"] = "auto"

    def validate(self) -> None:
        check(self.resolution >= 16, f"clips.resolution={self.resolution} must be >= 16")
        check(
            is_valid_num_frames(self.num_frames),
            f"clips.num_frames={self.num_frames} must be 4k+1 (e.g. 17, 33, 81)",
        )
        check(
            self.min_frames == 0
            or (is_valid_num_frames(self.min_frames) and self.min_frames <= self.num_frames),
            f"clips.min_frames={self.min_frames} must be 0 or 4k+1 <= num_frames",
        )
        check(self.max_clips_per_shot >= 0, "clips.max_clips_per_shot must be >= 0")
        check(self.seek_gap_frames >= 0, "clips.seek_gap_frames must be >= 0")

    @property
    def shortest_clip(self) -> int:
        return self.min_frames or self.num_frames


@dataclass
class CaptionSourceConfig(CaptionConfig):
    """Where captions come from: the manifest, a VLM captioner (``sama.captioner``: ``prompt``
    and ``vlm`` = model id, batch size, frames, decoding), or none."""

    source: Literal["manifest", "vlm", "none"] = "manifest"
    on_missing: Literal["error", "empty"] = "error"  # manifest row without a caption

    def validate(self) -> CaptionSourceConfig:
        return super().validate() if self.source == "vlm" else self


@dataclass
class AnchorsConfig:
    """Anchor frames for semantic anchoring (SAMA.md §2): N frames of each clip."""

    num: int = 1
    policy: Literal["first", "uniform"] = "first"  # first = frame 0; uniform = linspace(0, F-1)

    def validate(self) -> None:
        check(self.num >= 1, f"anchors.num={self.num} must be >= 1")
        check(
            self.policy != "first" or self.num == 1,
            "anchors.policy=first takes one anchor (frame 0); use anchors.policy=uniform "
            f"for anchors.num={self.num}",
        )


@dataclass
class TextConfig:
    """Optional umT5 embeddings of every prompt the trainer uses for a clip (SAMA.md §3)."""

    enabled: bool = False
    encoder: TextEncoderConfig = field(default_factory=TextEncoderConfig)


@dataclass
class BuildConfig:
    input: InputConfig = field(default_factory=InputConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    engine: EngineConfig = field(default_factory=EngineConfig)
    budget: BudgetConfig = field(default_factory=BudgetConfig)
    shots: ShotConfig = field(default_factory=ShotConfig)
    clips: ClipsConfig = field(default_factory=ClipsConfig)
    guard: GuardConfig = field(default_factory=GuardConfig)  # the clean-clip guard
    filters: FilterConfig = field(default_factory=FilterConfig)  # clip filters
    caption: CaptionSourceConfig = field(default_factory=CaptionSourceConfig)
    vae: VAEConfig = field(default_factory=VAEConfig)
    siglip: SiglipConfig = field(default_factory=SiglipConfig)
    anchors: AnchorsConfig = field(default_factory=AnchorsConfig)
    text: TextConfig = field(default_factory=TextConfig)
    pairs: PairsConfig = field(default_factory=PairsConfig)  # input.kind=pairs only
    judge: PairJudgeConfig = field(default_factory=PairJudgeConfig)  # input.kind=pairs only
    models_dir: str = ""  # substituted for "{models_dir}" in encoder model ids
    seed: int = 0

    def single_pass_blockers(self) -> list[str]:
        """Why the one-decode path (CutClips) cannot make these clips; [] when it can."""
        out = []
        if self.clips.long_shot != "first":
            out.append("clips.long_shot=multi (clips would wait for the end of their shot)")
        if self.shots.max_shot_frames:
            out.append("shots.max_shot_frames > 0 (splitting needs the whole shot)")
        if self.shots.backend == "opencv":
            out.append("shots.backend=opencv")
        return out

    def single_pass(self) -> bool:
        """Whether CutClips (one decode) replaces DetectShots + MakeClips (two)."""
        return self.clips.decode != "two_pass" and not self.single_pass_blockers()

    def validate(self) -> None:
        if self.input.kind == "pairs":
            self.pairs.check_unused()
            self.pair_manifest().validate()
        if self.clips.decode == "single_pass" and self.single_pass_blockers():
            raise ConfigError(
                f"clips.decode=single_pass does not work with {self.single_pass_blockers()}; "
                "use clips.decode=auto or two_pass"
            )
        for where, cfg in self._model_sections():
            if "{models_dir}" in cfg.model_id and not self.models_dir:
                raise ConfigError(
                    f"{where}.model_id={cfg.model_id!r} uses {{models_dir}} but models_dir is "
                    "not set; pass models_dir=DIR (e.g. the output of `sama models make-tiny`)"
                )

    def _model_sections(self) -> list[tuple[str, Any]]:
        return [
            ("vae", self.vae),
            ("siglip", self.siglip),
            ("text.encoder", self.text.encoder),
            ("caption.vlm", self.caption.vlm),
            ("judge.vlm", self.judge.vlm),
        ]

    def pair_manifest(self) -> Any:
        """The ``sama.pairs.PairManifestConfig`` of a pair build (``input.uri`` + ``pairs``)."""
        i = self.input
        return self.pairs.manifest(i.uri, i.limit, i.storage_options)

    def resolved(self) -> BuildConfig:
        """A copy with ``{models_dir}`` substituted in every model id."""
        out = dataclasses.replace(self)
        models_dir = str(Path(self.models_dir).expanduser()) if self.models_dir else ""

        def sub(cfg: Any) -> Any:
            return dataclasses.replace(
                cfg, model_id=cfg.model_id.replace("{models_dir}", models_dir)
            )

        out.vae, out.siglip = sub(self.vae), sub(self.siglip)
        out.text = dataclasses.replace(self.text, encoder=sub(self.text.encoder))
        out.caption = dataclasses.replace(self.caption, vlm=sub(self.caption.vlm))
        out.judge = dataclasses.replace(self.judge, vlm=sub(self.judge.vlm))
        return out


def load_build_config(
    path: str | Path | None = None, overrides: list[str] | None = None
) -> BuildConfig:
    """Defaults <- YAML at ``path`` <- ``a.b=value`` overrides; validated and resolved."""
    return load_config(BuildConfig, path, overrides).resolved()


# Sections/fields that change how a build runs, not which rows it writes.
_RUNTIME_FIELDS = {
    "engine": None,
    "budget": None,
    "output": (
        "uri",
        "if_exists",
        "shard_size_mb",
        "row_group_rows",
        "row_group_mb",
        "max_rows_per_shard",
        "storage_options",
    ),
    # input.kind: each kind has its own resume state (pipelines/engine/root.py)
    "input": ("uri", "kind", "limit", "storage_options", "allowed_roots", "allowed_schemes"),
    "models_dir": None,
}
# Sections that only one kind of build reads: left out of the other kind's fingerprint.
_KIND_SECTIONS = {"clips": ("shots", "clips", "guard", "filters", "caption"),
                  "pairs": ("pairs", "judge")}  # fmt: skip


def output_fingerprint(cfg: BuildConfig) -> dict:
    """The part of the config that decides the rows (everything but the runtime fields).

    Resolved model paths stay in: a different model directory may hold different weights.
    Sections of the other build kind are left out (a clip build ignores ``pairs``/``judge``).
    """
    data = to_dict(cfg)
    for kind, sections in _KIND_SECTIONS.items():
        if kind != cfg.input.kind:
            for key in sections:
                data.pop(key, None)
    for key, fields in _RUNTIME_FIELDS.items():
        if fields is None:
            data.pop(key, None)
        else:
            for f in fields:
                data[key].pop(f, None)
    return data
