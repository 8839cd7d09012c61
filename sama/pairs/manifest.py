"""Read an edit-pair manifest into ``PairItem``s (SAMA.md section 4: ``source``, ``target``,
``instruction`` per pair, videos or images).

Why this shape: the public corpora SAMA trained on ship their pairs in different layouts (CSV,
JSON lists, JSONL, Parquet, WebDataset shards) with different field names and path
conventions. ``PairManifestConfig`` says where the manifest is and how to read one row;
``sama.pairs.presets`` fills it in for each known corpus. A row that cannot become a pair
(missing field, empty instruction, broken JSON line, duplicate id) is returned as a ``BadRow``,
never raised: the build turns it into an ``errors/v1`` row of kind ``bad_manifest_row`` and
goes on (CONVENTIONS.md rule 5). Only a manifest that cannot be read at all, or a column that
no row has, is a ``ConfigError``.

Column specs are field paths (``sama.pairs.fields``): ``a.b``, ``a[-1]``, ``a[from=human]``,
``x|y``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any, Literal

from datasets_spec.provenance import stable_hash
from sama.config import check
from sama.errors import ConfigError, ErrorKind, SampleError
from sama.pairs.fields import (
    MediaType,
    folder_of,
    get_field,
    guess_media_type,
    has_field,
    join_uri,
    top_keys,
)

STAGE = "list_pairs"
Format = Literal["auto", "csv", "jsonl", "json", "parquet", "webdataset"]

_FORMAT_BY_EXT = {
    ".csv": "csv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "json",
    ".parquet": "parquet",
    ".tar": "webdataset",
}
GLOB_CHARS = "*?["


@dataclass
class PairColumns:
    """Field paths of one manifest row (see the module docstring for the path syntax)."""

    source: str = "source"
    target: str = "target"
    instruction: str = "instruction"
    id: str = "id"  # empty or absent -> a stable hash of (source, target, instruction)
    media_type: str = "media_type"  # optional per-row hint: "image" / "video"
    # VLM-judge scores already in the manifest (name -> field path); absent ones are skipped
    scores: dict[str, str] = field(
        default_factory=lambda: {
            "if": "score_if",
            "vq": "score_vq",
            "cp": "score_cp",
            "mc": "score_mc",
        }
    )


@dataclass
class PairManifestConfig:
    """Where an edit-pair manifest is and how to read it (CONVENTIONS.md rule 4).

    A ``preset`` (``sama.pairs.presets``) supplies defaults for the fields left at their
    defaults here: format, columns, base, media type, frames to drop. Anything set to a
    non-default value wins over the preset.
    """

    uri: str = ""  # a manifest file or a glob of them; any fsspec URI
    format: Format = "auto"  # auto = from the extension (.csv .jsonl .json .parquet .tar)
    columns: PairColumns = field(default_factory=PairColumns)
    # relative paths are resolved against this; "" = the preset's base (relative to the
    # manifest's folder), else the manifest's folder. A relative base_uri is relative to it too.
    base_uri: str = ""
    preset: str | None = None
    corpus: str = ""  # "" = the preset's corpus name, else the manifest's file stem
    media_type: Literal["auto", "image", "video"] = "auto"  # auto = row hint, then extension
    # frames dropped at the start of BOTH videos; None = the preset's rule (OpenVE-3M: 4), else 0
    drop_first_frames: int | None = None
    instruction_strip: list[str] = field(default_factory=list)  # substrings removed
    keep_metadata: bool = True  # unused fields of the row go to PairItem.metadata
    limit: int = 0  # 0 = every row; N = the first N rows (manifest order)
    storage_options: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> None:
        check(
            bool(self.uri),
            "pairs.uri is empty; set it to a manifest (.csv/.jsonl/.json/"
            ".parquet/.tar) or a glob of them",
        )
        check(self.limit >= 0, f"pairs.limit={self.limit} must be >= 0 (0 = all)")
        check(
            self.drop_first_frames is None or self.drop_first_frames >= 0,
            f"pairs.drop_first_frames={self.drop_first_frames} must be >= 0",
        )
        cfg = effective_config(self)  # raises ConfigError for an unknown preset
        for name in ("source", "target", "instruction"):
            check(
                bool(getattr(cfg.columns, name).strip()),
                f"pairs.columns.{name} is empty; name the manifest field that holds it",
            )
        if cfg.preset and not self.base_uri:
            from sama.pairs.presets import get_preset

            preset = get_preset(cfg.preset)
            check(
                not preset.requires_base_uri,
                f"preset {preset.name!r} keeps its images outside the manifest's folder; set "
                f"pairs.base_uri (e.g. {preset.base_uri_hint})",
            )


@dataclass(frozen=True)
class PairItem:
    """One edit pair, ready to probe: full URIs, the instruction and where it came from."""

    pair_id: str
    source_uri: str
    target_uri: str
    instruction: str
    corpus: str
    media_type: MediaType | None  # hint (manifest, config or extension); probing decides
    scores: dict[str, float] | None
    metadata: dict[str, Any]
    drop_first_frames: int = 0  # per-corpus rule, e.g. OpenVE-3M: 4 (SAMA.md section 4)
    row_index: int = -1
    input_uri: str = ""  # manifest#row, for error rows

    def to_row(self) -> dict[str, Any]:
        """The ``pairs/v1`` columns this item already knows."""
        return {
            "pair_id": self.pair_id,
            "corpus": self.corpus,
            "source_uri": self.source_uri,
            "target_uri": self.target_uri,
            "instruction": self.instruction,
        }


@dataclass(frozen=True)
class BadRow:
    """A manifest row that cannot become a pair; the build files it as an error row."""

    row_index: int
    raw: Any
    message: str
    item_id: str = ""
    input_uri: str = ""

    def error(self) -> SampleError:
        return SampleError(ErrorKind.BAD_MANIFEST_ROW, self.message, stage=STAGE)


# ---- configuration -----------------------------------------------------------------------
def effective_config(cfg: PairManifestConfig) -> PairManifestConfig:
    """``cfg`` with its preset's defaults filled in where ``cfg`` kept the generic defaults."""
    if not cfg.preset:
        return cfg
    from sama.pairs.presets import get_preset

    preset = get_preset(cfg.preset)
    default_cols = PairColumns()
    cols = dataclasses.replace(cfg.columns)
    for name, value in preset.columns.items():
        if getattr(cols, name) == getattr(default_cols, name):
            setattr(cols, name, value)
    return dataclasses.replace(
        cfg,
        preset=preset.name,
        format=preset.format if cfg.format == "auto" else cfg.format,
        columns=cols,
        corpus=cfg.corpus or preset.corpus,
        media_type=preset.media_type if cfg.media_type == "auto" else cfg.media_type,
        drop_first_frames=(
            preset.drop_first_frames if cfg.drop_first_frames is None else cfg.drop_first_frames
        ),
        instruction_strip=cfg.instruction_strip or list(preset.instruction_strip),
        base_uri=cfg.base_uri or preset.base,
    )


def detect_format(uri: str) -> str:
    """Manifest format from the extension; ``ConfigError`` when it is not one we read."""
    ext = PurePosixPath(uri.split("::")[0].split("?")[0]).suffix.lower()
    if ext not in _FORMAT_BY_EXT:
        raise ConfigError(
            f"cannot tell the format of manifest {uri!r} from its extension; set pairs.format "
            f"to one of csv, jsonl, json, parquet, webdataset"
        )
    return _FORMAT_BY_EXT[ext]


# ---- rows -> items -----------------------------------------------------------------------
def _scores(record: dict[str, Any], specs: dict[str, str]) -> dict[str, float] | None:
    out = {}
    for name, spec in specs.items():
        value = get_field(record, spec) if spec else None
        if value is None:
            continue
        try:
            out[name] = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"score {name!r} ({spec}) is not a number: {value!r}") from None
    return out or None


def _instruction(value: Any, strip: list[str]) -> str:
    text = value if isinstance(value, str) else ("" if value is None else str(value))
    for s in strip:
        text = text.replace(s, " ")
    return " ".join(text.split())


def _metadata(record: dict[str, Any], cfg: PairManifestConfig) -> dict[str, Any]:
    if not cfg.keep_metadata:
        return {}
    c = cfg.columns
    used: set[str] = set()
    for spec in (c.source, c.target, c.instruction, c.id, c.media_type, *c.scores.values()):
        used |= top_keys(spec)
    return {k: v for k, v in record.items() if k not in used and not k.startswith("__")}


def row_to_item(
    record: dict[str, Any], index: int, cfg: PairManifestConfig, base: str, input_uri: str
) -> PairItem | BadRow:
    """One manifest row -> a ``PairItem``, or a ``BadRow`` that says what is wrong with it."""
    c = cfg.columns

    def bad(message: str) -> BadRow:
        raw_id = get_field(record, c.id) if c.id else None
        item_id = str(raw_id) if raw_id is not None else stable_hash([input_uri, index])
        return BadRow(index, record, f"manifest row {index}: {message}", item_id, input_uri)

    source, target = get_field(record, c.source), get_field(record, c.target)
    missing = [n for n, v in (("source", source), ("target", target)) if v is None]
    if missing:
        fields = ", ".join(f"{n} ({getattr(c, n)})" for n in missing)
        return bad(f"no {fields}")
    if not isinstance(source, str) or not isinstance(target, str):
        return bad(
            f"source/target must be paths or URIs, got {type(source).__name__}/"
            f"{type(target).__name__}"
        )
    instruction = _instruction(get_field(record, c.instruction), cfg.instruction_strip)
    if not instruction:
        return bad(f"empty instruction ({c.instruction})")
    try:
        scores = _scores(record, c.scores)
    except ValueError as e:
        return bad(str(e))
    source_uri, target_uri = join_uri(base, source.strip()), join_uri(base, target.strip())
    hint = get_field(record, c.media_type) if c.media_type else None
    if hint is not None and str(hint).lower() not in ("image", "video"):
        return bad(f"media_type must be 'image' or 'video', got {hint!r}")
    media = (str(hint).lower() if hint is not None else None) or (
        cfg.media_type if cfg.media_type != "auto" else guess_media_type(source_uri)
    )
    raw_id = get_field(record, c.id) if c.id else None
    pair_id = (
        str(raw_id) if raw_id is not None else stable_hash([source_uri, target_uri, instruction])
    )
    return PairItem(
        pair_id=pair_id,
        source_uri=source_uri,
        target_uri=target_uri,
        instruction=instruction,
        corpus=cfg.corpus,
        media_type=media,
        scores=scores,
        metadata=_metadata(record, cfg),
        drop_first_frames=int(cfg.drop_first_frames or 0),
        row_index=index,
        input_uri=input_uri,
    )


# ---- reading -----------------------------------------------------------------------------
def manifest_files(cfg: PairManifestConfig) -> list[str]:
    """The manifest file URIs ``cfg.uri`` names (a glob expands in sorted order)."""
    import fsspec

    fs, path = fsspec.core.url_to_fs(cfg.uri, **cfg.storage_options)
    if any(ch in path for ch in GLOB_CHARS):
        found = sorted(fs.glob(path))
        if not found:
            raise ConfigError(f"pairs.uri={cfg.uri!r} matches no file")
        return [_spell_like(cfg.uri, fs, p) for p in found]
    if not fs.exists(path) or fs.isdir(path):
        raise ConfigError(f"pairs.uri={cfg.uri!r} is not a manifest file")
    return [cfg.uri]


def _stem(uri: str) -> str:
    return PurePosixPath(uri.split("::")[0].split("?")[0]).stem


def _spell_like(pattern: str, fs: Any, path: str) -> str:
    return fs.unstrip_protocol(path) if "://" in pattern else path


def iter_pair_chunks(cfg: PairManifestConfig) -> Iterator[list[PairItem | BadRow]]:
    """The manifest(s) as chunks of ``PairItem`` / ``BadRow``, in manifest order, streamed
    (``sama.manifests``: a huge manifest is never held whole). Duplicate ids are left to the
    caller (``read_pairs`` marks them; the build's listing does it in bounded memory).

    ``ConfigError`` when a manifest cannot be read or a required column is in no row of its
    first chunk."""
    from sama.manifests import BadRecord, iter_records

    cfg = effective_config(cfg)
    cfg.validate()
    index = 0
    for uri in manifest_files(cfg):
        fmt = detect_format(uri) if cfg.format == "auto" else cfg.format
        file_cfg = cfg if cfg.corpus else dataclasses.replace(cfg, corpus=_stem(uri))
        folder = folder_of(uri)
        base = join_uri(folder, cfg.base_uri) if cfg.base_uri else folder
        local = 0
        for n, records in enumerate(iter_records(uri, fmt, cfg.storage_options)):
            if n == 0:
                _check_columns(records, cfg, uri)
            out: list[PairItem | BadRow] = []
            for record in records:
                input_uri = f"{uri}#{local}"
                if isinstance(record, BadRecord):
                    out.append(BadRow(index, record.raw, record.message,
                                      stable_hash([input_uri]), input_uri))  # fmt: skip
                else:
                    out.append(row_to_item(record, index, file_cfg, base, input_uri))
                index += 1
                local += 1
                if cfg.limit and index >= cfg.limit:
                    yield out
                    return
            yield out


def read_pairs(cfg: PairManifestConfig) -> list[PairItem | BadRow]:
    """Every row of the manifest(s) as a ``PairItem`` or a ``BadRow``, in manifest order.

    Duplicate pair ids become ``BadRow``s (the first keeps its id). ``ConfigError`` when a
    manifest cannot be read or a required column is in no row at all.
    """
    out: list[PairItem | BadRow] = []
    seen: set[str] = set()
    for chunk in iter_pair_chunks(cfg):
        for item in chunk:
            if isinstance(item, PairItem) and item.pair_id in seen:
                item = BadRow(item.row_index, item, f"manifest row {item.row_index}: duplicate "
                              f"pair id {item.pair_id!r}", f"{item.pair_id}@row{item.row_index}",
                              item.input_uri)  # fmt: skip
            if isinstance(item, PairItem):
                seen.add(item.pair_id)
            out.append(item)
    return out


def _check_columns(records: list, cfg: PairManifestConfig, uri: str) -> None:
    """A required column that no row has is a configuration mistake, not N bad rows."""
    rows = [r for r in records if isinstance(r, dict)]
    if not rows:
        return
    c = cfg.columns
    for name in ("source", "target", "instruction"):
        spec = getattr(c, name)
        if not any(has_field(r, spec) for r in rows):
            keys = sorted({k for r in rows[:20] for k in r})
            raise ConfigError(
                f"manifest {uri!r}: no row has pairs.columns.{name}={spec!r}; fields seen: "
                f"{keys}. Set pairs.columns.{name} or pick a preset"
            )
