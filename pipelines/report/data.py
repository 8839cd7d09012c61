"""Gather what the report shows: scalar columns of every shard, the errors, and a few samples.

Only the small columns are read for the statistics (never the latents), so this scales with the
number of rows, not the size of the tensors; full rows are read only for the sampled previews.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from datasets_spec import SchemaError, read_tensor
from pipelines.dataset.layout import KINDS, DatasetDir
from pipelines.report.previews import (
    Picture,
    latent_preview,
    png_data_uri,
    source_frame_picture,
    stored_preview_picture,
)
from sama.shards import spec_of, url_to_fs

STAT_COLUMNS: dict[str, list[str]] = {
    "clips": [
        "clip_id",
        "video_id",
        "shot_index",
        "num_frames",
        "fps",
        "bucket_width",
        "bucket_height",
        "caption",
    ],
    "pairs": [
        "pair_id",
        "corpus",
        "media_type",
        "num_frames",
        "fps",
        "bucket_width",
        "bucket_height",
        "instruction",
        "score_if",
        "score_vq",
        "score_cp",
        "score_mc",
    ],
    "errors": ["item_id", "input_uri", "record_kind", "stage", "kind", "message", "time"],
}


@dataclass
class Sample:
    kind: str
    id: str
    text: str  # caption or instruction
    meta: str
    pictures: list[Picture] = field(default_factory=list)


@dataclass
class ReportData:
    root: str
    columns: dict[str, dict[str, list]]  # kind -> column -> values (all rows)
    shard_counts: dict[str, int]
    skipped: list[str]  # "path: why" for shards that could not be read
    samples: list[Sample] = field(default_factory=list)
    # kind -> [(shard path, rows)] of the readable shards, in row order
    locations: dict[str, list[tuple[str, int]]] = field(default_factory=dict)

    def rows(self, kind: str) -> int:
        cols = self.columns.get(kind) or {}
        return len(next(iter(cols.values()), []))


def read_stat_columns(ds: DatasetDir) -> ReportData:
    """Concatenate the statistics columns of every readable shard; remember each row's shard."""
    data = ReportData(ds.root, {}, {}, [])
    for kind in KINDS:
        tables, locs = [], []
        for path in ds.shards.get(kind, []):
            table = _read_columns(ds, path, kind, data.skipped)
            if table is not None:
                tables.append(table)
                locs.append((path, table.num_rows))
        data.shard_counts[kind] = len(ds.shards.get(kind, []))
        data.columns[kind] = (
            pa.concat_tables(tables).to_pydict() if tables else {c: [] for c in STAT_COLUMNS[kind]}
        )
        data.locations[kind] = locs
    return data


def _read_columns(ds: DatasetDir, path: str, kind: str, skipped: list[str]) -> pa.Table | None:
    fs, p = url_to_fs(path, ds.fs)
    try:
        with fs.open(p, "rb") as f:
            pf = pq.ParquetFile(f)
            spec = spec_of(pf.schema_arrow)
            if spec.kind != kind:
                raise SchemaError(f"declares {spec.id} but lies in {kind}/")
            return pf.read(columns=STAT_COLUMNS[kind])
    except (pa.ArrowException, OSError, SchemaError, KeyError) as e:
        skipped.append(f"{path}: {type(e).__name__}: {e}")
        return None


def pick(n_rows: int, k: int) -> list[int]:
    """``k`` row indices spread evenly over ``n_rows`` (deterministic)."""
    if n_rows <= 0 or k <= 0:
        return []
    return sorted({int(i) for i in np.linspace(0, n_rows - 1, min(k, n_rows)).round()})


def read_row(
    ds: DatasetDir, locations: list[tuple[str, int]], index: int, columns: list[str] | None = None
) -> dict:
    """Row ``index`` (over the concatenated readable shards of one kind): those of ``columns``
    the shard has (all by default)."""
    for path, n in locations:
        if index < n:
            fs, p = url_to_fs(path, ds.fs)
            with fs.open(p, "rb") as f:
                pf = pq.ParquetFile(f)
                for g in range(pf.num_row_groups):
                    rg_rows = pf.metadata.row_group(g).num_rows
                    if index < rg_rows:
                        have = pf.schema_arrow.names  # a v1 shard has no preview
                        cols = None if columns is None else [c for c in columns if c in have]
                        return pf.read_row_group(g, columns=cols).slice(index, 1).to_pylist()[0]
                    index -= rg_rows
        index -= n
    raise IndexError(index)


LatentPicture = Callable[[str, np.ndarray], Picture]


def cheap_latent_picture(label: str, latents_CTHW: np.ndarray) -> Picture:
    rgb = latent_preview(latents_CTHW)
    return Picture(f"{label} (ch 0-2)", png_data_uri(rgb), "latent ch 0-2, frame 0")


def clip_sample(row: dict, latent_picture: LatentPicture) -> Sample:
    anchors = row.get("anchor_frame_indices") or [0]
    frame = int(row["start_frame"]) + int(anchors[0])
    pics = [
        source_frame_picture(
            "anchor frame (source video)", row["source_uri"], frame, row.get("fps")
        )
    ]
    latents = read_tensor(row, "latents")
    if latents is not None:
        pics.append(latent_picture("latents", latents))
    stored = stored_preview_picture(row)
    pics = [stored, *pics] if stored else pics
    meta = (
        f"{row['bucket_width']}x{row['bucket_height']} · {row['num_frames']} frames · "
        f"{row['video_id']} shot {row['shot_index']} @ {row['start_s']:.2f} s"
    )
    return Sample("clips", row["clip_id"], row.get("caption") or "", meta, pics)


def pair_sample(row: dict, latent_picture: LatentPicture) -> Sample:
    anchors = row.get("anchor_frame_indices") or [0]
    start = int(row["start_frame"])
    pics = [
        source_frame_picture("source", row["source_uri"], start, row.get("fps")),
        source_frame_picture(
            "target anchor", row["target_uri"], start + int(anchors[0]), row.get("fps")
        ),
    ]
    for name, label in (("source_latents", "source latents"), ("target_latents", "target latents")):
        latents = read_tensor(row, name)
        if latents is not None:
            pics.append(latent_picture(label, latents))
    stored = stored_preview_picture(row)
    pics = [stored, *pics] if stored else pics
    scores = " ".join(
        f"{k[6:].upper()} {row[k]:.1f}"
        for k in ("score_if", "score_vq", "score_cp", "score_mc")
        if row.get(k) is not None
    )
    meta = (
        f"{row['media_type']} · {row['corpus']} · {row['bucket_width']}x"
        f"{row['bucket_height']} · {row['num_frames']} frames" + (f" · {scores}" if scores else "")
    )
    return Sample("pairs", row["pair_id"], row.get("instruction") or "", meta, pics)


def collect_samples(
    ds: DatasetDir, data: ReportData, n: int, latent_picture: LatentPicture = cheap_latent_picture
) -> list[Sample]:
    """About ``n`` samples, split evenly between clips and pairs (a kind with fewer rows than
    its share leaves the rest to the other)."""
    kinds = [k for k in ("clips", "pairs") if data.rows(k)]
    shares, left = {}, n
    for j, kind in enumerate(sorted(kinds, key=data.rows)):
        shares[kind] = min(data.rows(kind), left // (len(kinds) - j))
        left -= shares[kind]
    out: list[Sample] = []
    for kind in kinds:
        make = clip_sample if kind == "clips" else pair_sample
        for i in pick(data.rows(kind), shares[kind]):
            out.append(make(read_row(ds, data.locations[kind], i), latent_picture))
    return out
