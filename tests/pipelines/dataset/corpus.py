"""A tiny dataset built by the real build for the dedup and curation tests (cached per session).

Inputs are 1 s segments of real footage (``sama.testing.footage``) at 96x64, written with PyAV:

- ``box``, ``box_crf35`` (the same frames at another CRF) and ``box_small`` (resized to 72x48,
  another CRF): re-encodes of one video, near-duplicates of one another;
- ``cup``, ``carphone``, ``vtest``, ``bigbuckbunny_clip`` and ``cut`` (tree footage, its tail
  cut off: salvaged): different videos;
- ``megamind`` (a night scene, mean luma 34, under ``filters.min_luma=40``: ``filtered_dark``)
  and ``still`` (one cup frame repeated: ``filtered_static``).

The build runs in process (``engine.executor=local``) on the tiny random-weight models.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from tests.pipelines.helpers import demo_config, tiny_models

SIZE = (96, 64)
COPIES = ("box", "box_crf35", "box_small")  # re-encodes of one video; "box" is kept
OTHERS = ("cup", "carphone", "vtest", "bigbuckbunny_clip", "cut")
CURATED = {"megamind": "filtered_dark", "still": "filtered_static", "cut": "salvaged"}
BUILD_OVERRIDES = ("engine.executor=local", "filters.min_luma=40")


def _segment(name: str, start: int, n: int = 24, size=SIZE) -> np.ndarray:
    from sama.testing.footage import footage
    from sama.video.buckets import resize_crop
    from sama.video.decode import iter_frames

    return np.stack([resize_crop(f, size) for f in iter_frames(str(footage(name)), start, n)])


def write_media(out: Path) -> Path:
    """The inputs above and their manifest; returns the manifest."""
    from sama.media import write_video
    from sama.testing.damaged import truncate

    out.mkdir(parents=True, exist_ok=True)
    base = _segment("box", 100)
    small = _segment("box", 100, size=(72, 48))
    videos = {
        "box": write_video(out / "box.mp4", base, fps=24, options={"crf": "18"}),
        "box_crf35": write_video(out / "box_crf35.mp4", base, fps=24, options={"crf": "35"}),
        "box_small": write_video(out / "box_small.mp4", small, fps=24, options={"crf": "28"}),
    }
    for name, start in (("cup", 80), ("carphone", 10), ("vtest", 100), ("bigbuckbunny_clip", 20),
                        ("megamind", 30)):  # fmt: skip
        videos[name] = write_video(out / f"{name}.mp4", _segment(name, start), fps=24)
    still = np.repeat(_segment("cup", 200, 1), 24, axis=0)
    videos["still"] = write_video(out / "still.mp4", still, fps=24)
    whole = write_video(out / "tree_whole.mp4", _segment("tree", 0, 72), fps=24, gop=24,
                        container_options={"movflags": "faststart"})  # fmt: skip
    videos["cut"] = truncate(whole, out / "cut.mp4", 0.6)
    manifest = out / "manifest.jsonl"
    rows = [{"id": k, "video": str(v), "caption": f"footage {k}"} for k, v in videos.items()]
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return manifest


def built_root(factory) -> Path:
    """The built dataset (no dedup table), made once per session; tests copy it to change it."""
    from pipelines.build import build

    base = factory.getbasetemp() / "dedup_corpus"
    root = base / "dataset"
    if not (root / "summary.json").exists():
        manifest = write_media(base / "media")
        models = tiny_models(factory)
        build(demo_config(models, str(manifest), str(root), *BUILD_OVERRIDES))
    return root


def clip_id(video: str) -> str:
    return f"{video}-s000-c00"
