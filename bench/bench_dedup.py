"""Near-duplicate marking (``sama dedup``) on real footage through the real build: precision and
recall of the threshold, and what the job reads.

The set: 1 s segments of seven single-shot sources (``sama.testing.footage``: box, cup,
carphone, vtest, Big Buck Bunny, tree, Megamind) at 96x64, each written once as the original
(CRF 18) and three times as a copy: CRF 35, 150 kb/s, resized to 72x48 at CRF 28 (a copy group
of 4); plus, per source, the same camera shot 2 s later (``later``: not a copy, the hardest
negative). All of it goes through ``sama build`` (``configs/build_demo.yaml``, in process, the
tiny random-weight models: no real SigLIP weights can be downloaded here), then ``sama dedup``
at each threshold.

Reported per threshold, over the clips: **precision** = marked clips whose kept clip is of
their own copy group / marked clips; **recall** = clips marked correctly / clips that should be
(group size - 1 per group); and how many ``later`` clips were marked. Also the cosine range of
copies vs others, and the bytes the job reads (anchor-token columns) against the whole clip
shards, from the footers.

    python -m bench.bench_dedup [--dir DIR]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

SOURCES = {"box": 100, "cup": 80, "carphone": 10, "vtest": 100, "bigbuckbunny_clip": 20,
           "tree": 0, "megamind": 30}  # fmt: skip
COPIES = {"crf35": {"crf": "35"}, "150k": {"b": "150k"}, "small": {"crf": "28"}}
THRESHOLDS = (0.9, 0.93, 0.95, 0.97, 0.98, 0.99, 0.995, 0.999)
LATER_FRAMES = 48  # "later": the same shot 2 s on, at 24 fps


def write_set(out: Path) -> Path:
    from sama.media import write_video
    from tests.pipelines.dataset.corpus import _segment

    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for name, start in SOURCES.items():
        base = _segment(name, start)
        files = {name: write_video(out / f"{name}.mp4", base, fps=24, options={"crf": "18"})}
        for tag, opts in COPIES.items():
            frames = _segment(name, start, size=(72, 48)) if tag == "small" else base
            files[f"{name}_{tag}"] = write_video(out / f"{name}_{tag}.mp4", frames, fps=24,
                                                 options=opts)  # fmt: skip
        later = _segment(name, start + LATER_FRAMES)
        files[f"{name}_later"] = write_video(out / f"{name}_later.mp4", later, fps=24)
        rows += [{"id": k, "video": str(v), "caption": k} for k, v in files.items()]
    manifest = out / "manifest.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return manifest


def group(clip_id: str, same_shot: bool = False) -> str:
    """The copy group of a clip (its source); a ``later`` clip is a group of its own, unless
    ``same_shot`` (then it belongs to its source's)."""
    video = clip_id.rsplit("-s", 1)[0]
    if video.endswith("_later"):
        return video.removesuffix("_later") if same_shot else video
    for tag in COPIES:
        video = video.removesuffix(f"_{tag}")
    return video


def score(
    rows: list[tuple[str, str]], ids: list[str], same_shot: bool = False
) -> tuple[float, float]:
    """(precision, recall) of the marked ``rows`` (clip, kept clip) against the copy groups."""
    sizes: dict[str, int] = {}
    for c in ids:
        sizes[group(c, same_shot)] = sizes.get(group(c, same_shot), 0) + 1
    should = sum(n - 1 for g, n in sizes.items() if not g.endswith("_later"))
    right = sum(1 for c, kept in rows if group(c, same_shot) == group(kept, same_shot))
    return (right / len(rows) if rows else 1.0), right / max(1, should)


def read_bytes(root: Path) -> tuple[int, int]:
    """(compressed bytes of the columns dedup reads, of the whole clip shards) from the footers."""
    from pipelines.dataset.dedup import READ_COLUMNS

    read = total = 0
    for path in root.glob("clips/*.parquet"):
        md = pq.ParquetFile(path).metadata
        for g in range(md.num_row_groups):
            rg = md.row_group(g)
            for j in range(rg.num_columns):
                c = rg.column(j)
                total += c.total_compressed_size
                read += (
                    c.total_compressed_size if c.path_in_schema.split(".")[0] in READ_COLUMNS else 0
                )
    return read, total


def main(argv: list[str] | None = None) -> int:
    from pipelines.build import build
    from pipelines.dataset.dedup import DedupRun, run_dedup, shard_embeddings
    from pipelines.dataset.dedup_table import read_dedup_table
    from pipelines.engine.config import EngineConfig
    from sama.dedup import DedupConfig
    from sama.encoders.tiny import make_tiny_models
    from tests.pipelines.helpers import demo_config

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dir", help="work folder (default: a temporary one, removed)")
    args = p.parse_args(argv)
    work = Path(args.dir or tempfile.mkdtemp(prefix="bench-dedup-"))
    try:
        manifest = write_set(work / "media")
        make_tiny_models(work / "models")
        root = work / "dataset"
        t0 = time.perf_counter()
        build(demo_config(work / "models", str(manifest), str(root), "engine.executor=local"))
        print(f"built in {time.perf_counter() - t0:.1f}s", file=sys.stderr)
        parts = [shard_embeddings(str(s)) for s in sorted(root.glob("clips/*.parquet"))]
        ids = [c for q in parts for c in q["clip_ids"]]
        emb = np.concatenate([q["emb"] for q in parts]).astype(np.float32)
        emb /= np.linalg.norm(emb, axis=1, keepdims=True)
        sim = emb @ emb.T
        same = np.array([[group(a) == group(b) for b in ids] for a in ids]) & ~np.eye(
            len(ids), dtype=bool
        )
        later = np.array([group(a).endswith("_later") or group(b).endswith("_later") for a in ids
                          for b in ids]).reshape(len(ids), len(ids))  # fmt: skip
        other = ~same & ~np.eye(len(ids), dtype=bool)
        print(f"{len(ids)} clips, {len({group(c) for c in ids if not group(c).endswith('_later')})} "
              f"copy groups; cosine: copies >= {sim[same].min():.4f}; copy vs other footage <= "
              f"{sim[other & ~later].max():.4f}; vs its own shot 2 s later <= {sim[other & later].max():.4f}")  # fmt: skip
        print(
            "| threshold | marked | precision | recall | `later` marked | P / R, `later` = copy |"
        )
        print("|---|---|---|---|---|---|")
        for t in THRESHOLDS:
            run = DedupRun(DedupConfig(threshold=t), EngineConfig(executor="local"), overwrite=True)
            run_dedup(str(root), run, progress=False)
            table = read_dedup_table(str(root))
            rows = list(zip(table.clip_id, table.duplicate_of, strict=True))
            prec, rec = score(rows, ids)
            prec2, rec2 = score(rows, ids, same_shot=True)
            n_later = sum(1 for c, _ in rows if group(c).endswith("_later"))
            print(f"| {t:g} | {len(rows)} | {prec:.2f} | {rec:.2f} | {n_later} | "
                  f"{prec2:.2f} / {rec2:.2f} |")  # fmt: skip
        read, total = read_bytes(root)
        print(f"dedup reads {read / total:.1%} of the clip shards' compressed bytes here "
              "(tiny 64 px latents; the share falls with real latent sizes)")  # fmt: skip
    finally:
        if not args.dir:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
