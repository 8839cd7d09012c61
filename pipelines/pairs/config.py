"""Config sections of a pair build (``input.kind=pairs``): the manifest, alignment, prompts, judge.

Kept apart from ``pipelines/config.py`` (which wires them into ``BuildConfig``) because they are
all about edit pairs (SAMA.md §4). The manifest itself is ``input.uri`` (with ``input.limit``
and ``input.storage_options``, as for clips); ``pairs`` says how to read it (a corpus preset,
column mapping, frames to drop) and how strict the source/target checks are (``pairs.align``).

Prompt policy (*open* in the paper, decided here and recorded in the shard provenance): the
released inference prefixes every edit instruction with ``[Video edit] ``, and our trainer
(``trainer/inputs.py`` ``edit_prompt``) does so for image and video pairs alike, so by default
the stored instruction embeddings are those of ``"[Video edit] " + instruction`` for both media;
``pairs.prefix_media`` narrows that (e.g. ``[video]``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Literal

from sama.config import check
from sama.judge import JudgeConfig
from sama.pairs.align import AlignConfig
from sama.pairs.manifest import PairManifestConfig

EDIT_PREFIX = "[Video edit] "  # SAMA.md §3: "Editing instructions in SFT use the prefix"


@dataclass
class PairsConfig(PairManifestConfig):
    """How to read the pair manifest at ``input.uri`` (``sama.pairs.PairManifestConfig``: a
    ``preset``, ``columns``, ``base_uri``, ``drop_first_frames``...), the alignment checks, and
    the instruction prompt. ``pairs.uri``/``limit``/``storage_options`` are not used: set
    ``input.uri``, ``input.limit``, ``input.storage_options``."""

    align: AlignConfig = field(default_factory=AlignConfig)
    instruction_prefix: str = EDIT_PREFIX
    prefix_media: list[Literal["image", "video"]] = field(
        default_factory=lambda: ["image", "video"]
    )

    def validate(self) -> None:
        """Checked by ``BuildConfig.validate`` for pair builds (it needs ``input.uri``)."""

    def check_unused(self) -> None:
        default = PairManifestConfig()
        for name in ("uri", "limit", "storage_options"):
            check(
                getattr(self, name) == getattr(default, name),
                f"pairs.{name} is not used: the pair manifest is input.uri (set input.{name})",
            )

    def manifest(self, uri: str, limit: int, storage_options: dict) -> PairManifestConfig:
        """The ``PairManifestConfig`` that ``sama.pairs.read_pairs`` reads."""
        own = {f.name: getattr(self, f.name) for f in dataclasses.fields(PairManifestConfig)}
        own.update(uri=uri, limit=limit, storage_options=dict(storage_options))
        return PairManifestConfig(**own)

    def prompt(self, instruction: str, media_type: str) -> str:
        """The prompt whose embedding is stored for a pair (see the module docstring)."""
        prefix = self.instruction_prefix
        if media_type not in self.prefix_media or not prefix.strip():
            return instruction
        return instruction if instruction.startswith(prefix.strip()) else prefix + instruction

    def prompt_policy(self) -> dict:
        """Provenance of the prompt policy."""
        return {
            "prompt": "instruction_prefix + instruction",
            "instruction_prefix": self.instruction_prefix,
            "prefix_media": list(self.prefix_media),
        }


@dataclass
class PairJudgeConfig(JudgeConfig):
    """The optional VLM judge of a pair build (``sama.judge.JudgeConfig`` + ``enabled``).

    ``filter=build``: pairs under the thresholds become ``filtered`` error rows (so every input
    is still accounted for); ``filter=trainer``: every scored pair is kept with its scores and
    the trainer applies ``data.image_min_scores``/``video_min_scores``. An answer that cannot be
    parsed in any run is a ``judge_unparseable`` error row either way. ``vlm.model_id`` may use
    ``{models_dir}``.
    """

    enabled: bool = False
