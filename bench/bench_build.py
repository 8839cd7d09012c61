"""Build benchmarks (issue 4), every ratio measured against a baseline in the same run.

1. Decode passes per kept frame: how many times each frame that ends up in a clip is decoded,
   single-pass ``CutClips`` (the default) vs two-pass ``DetectShots`` + ``MakeClips``. Goal <= 1.2.
2. Peak RSS of cutting the clips of a long 720p video vs a 10-second one (probe + cut, the part
   whose memory could grow with the video; encoders see one clip at a time). Goal <= 1.3x.
3. Build throughput with the tiny encoders on Ray: 2 worker CPUs vs 1 (every pool and task
   slot doubled). Goal >= 1.8x. Meaningless on a machine with fewer than 2 idle cores.

    python -m bench.bench_build [--long-minutes 10] [--skip rss,throughput]

Videos are generated (textured shots with camera sway, H.264), so the decoder does real work.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

FPS = 24


def make_video(path: Path, seconds: float, size: tuple[int, int], seed: int = 0) -> list[int]:
    """Shots of 2-8 s (random), textured and swaying; returns the shot lengths."""
    import av

    w, h = size
    rng = np.random.default_rng(seed)
    total, lengths = int(seconds * FPS), []
    while sum(lengths) < total:
        lengths.append(min(int(rng.integers(2 * FPS, 8 * FPS)), total - sum(lengths)))
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.options = {"preset": "ultrafast", "crf": "28"}
        for length in lengths:
            tex = rng.integers(0, 255, size=(h // 8 + 4, w // 8 + 4, 3), dtype=np.uint8)
            tex = np.kron(tex, np.ones((8, 8, 1), np.uint8))
            for i in range(length):
                x, y = int(16 + 12 * np.sin(i / 15)), int(16 + 12 * np.cos(i / 20))
                frame = av.VideoFrame.from_ndarray(tex[y : y + h, x : x + w], format="rgb24")
                container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return lengths


def cut_config(video: Path, decode: str, num_frames: int = 81):
    from pipelines.config import load_build_config

    return load_build_config(None, [f"input.uri={video}", "output.uri=/unused",
                                    "caption.source=none", "clips.resolution=480",
                                    f"clips.num_frames={num_frames}", f"clips.decode={decode}",
                                    "engine.executor=local"])  # fmt: skip


def cut(video: Path, decode: str) -> tuple[list[dict], list]:
    """Probe + cut one video in this process, streaming; (clip rows minus frames, the stages)."""
    from pipelines.clips.recipe import ListInputs, make_stages

    cfg = cut_config(video, decode)
    stages = make_stages(cfg)[: 2 if decode == "single_pass" else 3]
    rows = ListInputs(cfg).process([])
    for st in stages[:-1]:
        rows = st.process(rows)
    clips = []
    for batch in stages[-1].process(rows):  # a clip at a time: drop its frames at once
        clips += [{k: v for k, v in r.items() if k != "frames"} for r in batch]
    return clips, stages


def bench_decode_passes(tmp: Path) -> None:
    video = tmp / "passes.mp4"
    make_video(video, 120, (640, 360))
    print("1. decode passes per kept frame (2 min 640x360 H.264, 81-frame clips)")
    base = None
    for decode in ("two_pass", "single_pass"):
        t0 = time.perf_counter()
        clips, stages = cut(video, decode)
        wall = time.perf_counter() - t0
        kept = sum(c["num_frames"] for c in clips)
        total = max(c["shot_end_frame"] for c in clips)
        last = stages[-1]
        if decode == "single_pass":
            decodes, decoded = kept + last.frames_redecoded, last.frames_decoded
            decoded += last.frames_redecoded
        else:  # the detector decodes every frame, MakeClips decodes the clip runs again
            decodes, decoded = 2 * kept, total + last.frames_decoded
        base = base or wall
        print(f"   {decode:12s} {len(clips):3d} clips  decodes per kept frame "
              f"{decodes / kept:.2f}  frames decoded {decoded} of {total}  wall {wall:.1f}s "
              f"(speed-up {base / wall:.2f}x)")  # fmt: skip
    print("   goal: <= 1.2 decodes per kept frame")


def rss_child(video: str) -> None:
    """Run in a fresh process: cut the clips, report the peak RSS in MiB on stdout."""
    clips, _ = cut(Path(video), "single_pass")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"clips": len(clips), "peak_mib": peak}))


def bench_rss(tmp: Path, long_minutes: float) -> None:
    print(f"2. peak RSS, probe + cut of a 720p H.264 video: {long_minutes:g} min vs 10 s")
    out = {}
    for name, seconds in (("10 s", 10), (f"{long_minutes:g} min", long_minutes * 60)):
        video = tmp / f"rss_{int(seconds)}.mp4"
        t0 = time.perf_counter()
        make_video(video, seconds, (1280, 720), seed=1)
        gen = time.perf_counter() - t0
        res = subprocess.run([sys.executable, "-m", "bench.bench_build", "--rss-child",
                              str(video)], capture_output=True, text=True, check=True)  # fmt: skip
        out[name] = json.loads(res.stdout.strip().splitlines()[-1])
        print(f"   {name:8s} {out[name]['clips']:4d} clips  peak RSS "
              f"{out[name]['peak_mib']:.0f} MiB  (video generated in {gen:.0f}s)")  # fmt: skip
    short, long_ = out.values()
    print(f"   ratio {long_['peak_mib'] / short['peak_mib']:.2f}x  (goal <= 1.3x)")


def bench_throughput(tmp: Path) -> None:
    from pipelines.clips.recipe import ListInputs, make_stages
    from pipelines.config import load_build_config
    from pipelines.engine import runner
    from sama.encoders.tiny import make_tiny_models

    models, videos = tmp / "models", tmp / "videos"
    make_tiny_models(models)
    videos.mkdir()
    for i in range(12):
        make_video(videos / f"v{i}.mp4", 20, (192, 108), seed=10 + i)
    print("3. build throughput, tiny encoders, 12 videos x 20 s (192x108), 64p 17-frame clips")
    rates = {}
    for workers in (1, 2):
        share = [
            f"engine.{s}.num_cpus={c}"
            for s, c in (
                ("probe", 0.4),
                ("clips", 0.4),
                ("caption", 0.4),
                ("latents", 0.2),
                ("anchors", 0.2),
                ("text", 0.2),
            )
        ]
        pools = [f"engine.{s}.concurrency={workers}" for s in ("latents", "anchors", "text")]
        cfg = load_build_config(Path(__file__).parents[1] / "configs/build_demo.yaml", [
            f"models_dir={models}", f"input.uri={videos}", "output.uri=/unused",
            "caption.source=none", f"engine.num_cpus={workers}", *share, *pools])  # fmt: skip
        stages, inputs, arrivals = make_stages(cfg), ListInputs(cfg).process([]), []
        with runner.ray_session(cfg):
            t0 = time.perf_counter()
            runner.run(
                cfg, stages, inputs, lambda b, a=arrivals: a.append((time.perf_counter(), len(b)))
            )
            wall = time.perf_counter() - t0
        # steady state: from the first finished batch to the last (actor start-up excluded)
        n = sum(k for _, k in arrivals[1:])
        rates[workers] = n / max(arrivals[-1][0] - arrivals[0][0], 1e-9)
        print(f"   {workers} worker CPU(s): {n + arrivals[0][1]} clips, {wall:.1f}s in all, "
              f"steady state {rates[workers]:.2f} clips/s")  # fmt: skip
    print(
        f"   ratio {rates[2] / rates[1]:.2f}x  (goal >= 1.8x; {os.cpu_count()} cores here, shared)"
    )


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.bench_build", description=__doc__)
    p.add_argument("--long-minutes", type=float, default=10.0)
    p.add_argument("--skip", default="", help="comma list of: passes, rss, throughput")
    p.add_argument("--rss-child", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.rss_child:
        rss_child(args.rss_child)
        return
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    skip = set(args.skip.split(","))
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        if "passes" not in skip:
            bench_decode_passes(tmp)
        if "rss" not in skip:
            bench_rss(tmp, args.long_minutes)
        if "throughput" not in skip:
            bench_throughput(tmp)


if __name__ == "__main__":
    main()
