"""The clip build's decode jobs: what the decode sandbox (``sama.sandbox``) runs for each input.

Each job is a generator ``job(ctx, **kwargs)`` of plain dicts; frames are allocated with
``ctx.alloc`` (shared memory in the sandbox), and ``ctx.check()`` runs between frames so a slow
input stops at its deadline with what it made so far.

- ``probe_job``: ``VideoInfo`` fields; a damaged file that still decodes gets a ``salvage``
  note instead of an error; bad, too short, too large inputs are ``SampleError``s.
- ``cut_job`` (single pass): one salvaging decode feeds the boundary detector (low-resolution
  frames) and, for the frames of each shot's first clip, the bucket-size conversion (FFmpeg's
  scaler: no full-resolution RGB frame, no second resize). Yields each candidate clip as its
  shot ends, finished (``cutting.finish_clip``: kept, trimmed or dropped with a reason), then
  one summary: shot lengths, frames decoded, what was salvaged.
- ``detect_job`` + ``make_job`` (two passes, for ``long_shot=multi``): the shots first, then
  the clips of every shot decoded as runs (a gap longer than ``seek_gap_frames`` is a seek; a
  damaged file is decoded from its start so frame indices stay those of the first pass).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from sama.errors import ErrorKind, SampleError
from sama.video.cutting import (
    RAW_HOLD_BYTES,
    ClipPlan,
    CutSpec,
    ShotClip,
    ShotCutter,
    bucket_frame,
    decode_runs,
    finish_clip,
)
from sama.video.probe import input_fs


def probe_job(ctx: Any, uri: str, storage_options: dict, shortest_clip: int, max_pixels: int,
              max_frames: int, stage: str = "probe") -> Iterator[dict]:  # fmt: skip
    """One dict: ``VideoInfo`` fields; bad files, short/huge videos are ``SampleError``s."""
    from sama.video.probe import probe_video

    info = probe_video(uri, fs=input_fs(uri, storage_options), salvage=True)
    if info.width * info.height > max_pixels:
        raise SampleError(ErrorKind.TOO_LARGE, f"{info.width}x{info.height} is more than "
                          f"budget.max_pixels={max_pixels}", stage=stage)  # fmt: skip
    if info.num_frames > max_frames:
        raise SampleError(ErrorKind.TOO_LARGE, f"{info.num_frames} frames is more than "
                          f"budget.max_frames={max_frames}", stage=stage)  # fmt: skip
    if info.num_frames < shortest_clip:
        raise SampleError(ErrorKind.TOO_SHORT, f"{info.num_frames} frames, a clip needs at least "
                          f"{shortest_clip}", stage=stage)  # fmt: skip
    if info.fps <= 0:
        raise SampleError(ErrorKind.NOT_A_VIDEO, "no frame rate", stage=stage)
    yield info.to_dict()


def stream_frames(uri: str, storage_options: dict, info: Any, start: int, count: int,
                  seek: bool = True) -> Iterator[tuple[int, np.ndarray]]:  # fmt: skip
    """``(index, frame_HWC)`` for frames ``start .. start+count-1`` (a damaged file: with gaps)."""
    from sama.video.decode import iter_indexed_frames

    return iter_indexed_frames(uri, start=start, count=count, info=info, seek=seek,
                               fs=input_fs(uri, storage_options))  # fmt: skip


def take_clip(ctx: Any, frames: Iterator[tuple[int, np.ndarray]], plan: ClipPlan,
              bucket: tuple[int, int]) -> np.ndarray:  # fmt: skip
    """Consume the stream up to the end of ``plan``; its frames resized into the bucket. A gap
    (frames lost to damage) inside the clip ends it: the clip is ``truncated``."""
    from sama.video.buckets import resize_crop

    w, h = bucket
    clip_THWC = ctx.alloc((plan.num_frames, h, w, 3))
    got = 0
    for idx, frame_HWC in frames:
        if idx >= plan.end:
            break
        if idx >= plan.start:
            if idx != plan.start + got:
                break
            ctx.check()
            clip_THWC[got] = resize_crop(frame_HWC, bucket)
            got += 1
            if got == plan.num_frames:
                break
    if got < plan.num_frames:
        raise SampleError(ErrorKind.TRUNCATED, f"the video gave {got} of the {plan.num_frames} "
                          f"frames of the clip at frame {plan.start}", stage="decode")  # fmt: skip
    return clip_THWC


def cut_job(ctx: Any, uri: str, storage_options: dict, shots: Any, spec: CutSpec,
            stage: str = "cut_clips") -> Iterator[dict]:  # fmt: skip
    """Single pass (module docstring): finished clips, then ``{"shot_lengths", "total",
    "decoded", "redecoded", "salvage"}``."""
    from av.video.reformatter import VideoReformatter

    from sama.video.probe import open_container, resolve, stream_fps, video_stream
    from sama.video.salvage import SalvageDecoder
    from sama.video.shots import frame_converter, make_boundary_detector

    fs, path = resolve(uri, input_fs(uri, storage_options))
    reformatter = VideoReformatter()
    w, h = spec.bucket
    state = {"index": 0, "redecoded": 0, "lengths": []}
    with open_container(fs, path, uri, stage=stage) as container:
        stream = video_stream(container, uri, stage=stage)
        stream.codec_context.thread_type = "SLICE" if shots.decode_threads == 1 else "AUTO"
        stream.codec_context.thread_count = shots.decode_threads
        detector = make_boundary_detector(shots, stream_fps(stream) or 25)
        frame_bytes = max(1, stream.codec_context.width * stream.codec_context.height * 3 // 2)
        cutter = ShotCutter(detector, spec.num_frames, frame_converter(shots),
                            lambda raw: bucket_frame(raw, reformatter, spec.bucket),
                            lambda k: ctx.alloc((k, h, w, 3)),
                            hold_frames=max(1, RAW_HOLD_BYTES // frame_bytes))  # fmt: skip
        decoder = SalvageDecoder(container, stream, uri, stage)

        def clips(done: list[ShotClip]) -> Iterator[dict]:
            for shot in done:
                state["lengths"].append(shot.end - shot.start)
                item = _shot_clip(ctx, uri, storage_options, state, shot, spec, cutter,
                                  not decoder.damage)  # fmt: skip
                if item is not None:
                    yield item

        n = 0
        for i, raw in decoder:
            ctx.check()
            n = i + 1
            yield from clips(cutter.push(i, raw))
        yield from clips(cutter.finish(n))
    yield {"shot_lengths": state["lengths"], "total": n, "decoded": decoder.frames,
           "redecoded": state["redecoded"], "salvage": decoder.note()}  # fmt: skip


def _shot_clip(ctx: Any, uri: str, storage_options: dict, state: dict, shot: ShotClip,
               spec: CutSpec, cutter: ShotCutter, seek: bool) -> dict | None:  # fmt: skip
    index = state["index"]
    state["index"] += 1
    n = spec.clip_length(shot.end - shot.start)
    if not n:
        return None
    plan = ClipPlan(index, 0, shot.start, shot.end, shot.start, n)
    if shot.filled >= n:
        clip_THWC = cutter.clip_frames(shot, n)
    else:  # a boundary reported later than the lag: decode this clip again
        frames = stream_frames(uri, storage_options, None, shot.start, n, seek)
        clip_THWC = take_clip(ctx, frames, plan, spec.bucket)
        state["redecoded"] += n
    return finish_clip(plan, clip_THWC, spec)


def detect_job(ctx: Any, uri: str, storage_options: dict, shots: Any) -> Iterator[dict]:
    """Two passes, first: ``{"starts", "ends", "salvage"}`` of every shot (boundaries between)."""
    from sama.video.boundaries import shots_from_boundaries
    from sama.video.shots import detect_boundaries

    found = detect_boundaries(uri, shots, fs=input_fs(uri, storage_options), check=ctx.check)
    spans = shots_from_boundaries(found.boundaries, found.num_frames, shots.max_shot_frames)
    yield {"starts": [s for s, _ in spans], "ends": [e for _, e in spans], "salvage": found.salvage}


def make_job(ctx: Any, uri: str, storage_options: dict, info: dict, plans: list[ClipPlan],
             spec: CutSpec, seek_gap_frames: int, damaged: bool) -> Iterator[dict]:  # fmt: skip
    """Two passes, second: each planned clip finished (``cutting.finish_clip``), in frame
    order, each run of clips decoded as one stream."""
    from sama.video.probe import VideoInfo

    video = VideoInfo(**info)
    for run in decode_runs(plans, seek_gap_frames):
        frames = stream_frames(uri, storage_options, video, run[0].start,
                               run[-1].end - run[0].start, seek=not damaged)  # fmt: skip
        for plan in run:
            yield finish_clip(plan, take_clip(ctx, frames, plan, spec.bucket), spec)
