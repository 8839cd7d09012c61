"""Clips out of a video: which frames (plans), how they are cut (one or two decodes), their stats.

SAMA.md §1: a clip is the first F = 4k+1 contiguous frames of a shot (or, with ``multi``,
back-to-back clips), cover-resized and centre-cropped to the aspect bucket nearest the video's.
The build's clip stages (``pipelines/clips/``) run the jobs below in a killable child process
(``sama.sandbox``), so they are plain generators here: ``job(ctx, **kwargs)`` yields dicts.

- ``probe_job``: size, fps, frames, codec; too short / too large / no frame rate are errors.
- ``cut_job`` (single pass): one decode feeds the shot detector (low-resolution frames) and,
  for the frames of the current shot's first clip, the bucket-size conversion, which FFmpeg's
  scaler does while converting to RGB (``bucket_frame``: no full-resolution RGB frame, no second
  resize in Python). Memory: one clip at bucket size (in shared memory, ``ctx.alloc``) plus the
  last ``lag`` raw frames: a detector may report a cut a few frames late, so a frame is assigned
  to a shot only once no cut can still be reported before it; a later report costs a re-decode
  of that one clip (``take_clip``), never a wrong clip.
- ``detect_job`` + ``make_job`` (two passes): shots first, then the clips of every shot decoded
  as runs (a gap longer than ``seek_gap_frames`` is a seek), for ``long_shot=multi``.

Legend: ``frame_HWC`` one RGB frame at the bucket size, ``clip_THWC`` a clip of them.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sama.errors import ErrorKind, SampleError
from sama.video.frames import clip_starts, floor_4k1

_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # BT.601


@dataclass(frozen=True)
class ClipPlan:
    shot_index: int
    clip_index: int
    shot_start: int
    shot_end: int
    start: int
    num_frames: int

    @property
    def end(self) -> int:
        return self.start + self.num_frames


def plan_clips(shot_starts: list[int], shot_ends: list[int], num_frames: int,
               long_shot: str = "first", min_frames: int = 0,
               max_clips_per_shot: int = 0) -> list[ClipPlan]:  # fmt: skip
    """The clips of a video: per shot, ``clip_starts`` clips of ``num_frames`` frames, or one
    ``floor_4k1(len)`` clip if the shot is shorter but has ``min_frames`` (> 0)."""
    plans = []
    for s, (a, b) in enumerate(zip(shot_starts, shot_ends, strict=True)):
        length = b - a
        if length >= num_frames:
            starts, n = clip_starts(length, num_frames, long_shot), num_frames
            if max_clips_per_shot:
                starts = starts[:max_clips_per_shot]
        elif min_frames and length >= min_frames:
            starts, n = [0], floor_4k1(length)
        else:
            continue
        plans += [ClipPlan(s, c, a, b, a + st, n) for c, st in enumerate(starts)]
    return plans


def decode_runs(plans: list[ClipPlan], seek_gap_frames: int) -> list[list[ClipPlan]]:
    """Group clips (in frame order) into runs decoded as one stream; a longer gap splits."""
    runs: list[list[ClipPlan]] = []
    for p in sorted(plans, key=lambda p: p.start):  # clips never overlap (see plan_clips)
        if runs and p.start - runs[-1][-1].end <= seek_gap_frames:
            runs[-1].append(p)
        else:
            runs.append([p])
    return runs


STATS_STEP = 4  # clip statistics on every 4th pixel of every 4th row


def clip_stats(clip_THWC: np.ndarray) -> tuple[float, float]:
    """(mean luma, mean |luma difference| of consecutive frames), both on a 0-255 scale.

    Computed on a 4x-subsampled grid: the full grid cost ~0.5 s per 81-frame 480p clip here
    (a float32 copy of all 97 MB), more than decoding its frames, for the same two numbers to
    within a fraction of a grey level."""
    grid_THWC = clip_THWC[:, ::STATS_STEP, ::STATS_STEP]
    luma_THW = grid_THWC.astype(np.float32) @ _LUMA
    motion = float(np.abs(np.diff(luma_THW, axis=0)).mean()) if len(luma_THW) > 1 else 0.0
    return float(luma_THW.mean()), motion


def unusable(shot_lengths: list[int], total: int, need: int, stage: str) -> SampleError:
    """Why a video gave no clip: too short as a whole, or no shot long enough."""
    if total < need:
        return SampleError(ErrorKind.TOO_SHORT, f"{total} decodable frames, a clip needs {need}",
                           stage=stage)  # fmt: skip
    return SampleError(
        ErrorKind.NO_USABLE_SHOT,
        f"{len(shot_lengths)} shots, the longest has {max(shot_lengths, default=0)} frames, "
        f"a clip needs {need}",
        stage=stage,
    )


def bucket_frame(frame: Any, reformatter: Any, bucket: tuple[int, int]) -> np.ndarray:
    """PyAV frame -> upright RGB ``frame_HWC`` at ``bucket`` (W, H): FFmpeg's scaler resizes to
    the cover size while converting (area filter when shrinking), then a centre crop."""
    from sama.video.buckets import resize_crop_plan
    from sama.video.decode import upright_rgb

    k = (int(round(getattr(frame, "rotation", 0) or 0)) // 90) % 4
    w, h = (frame.height, frame.width) if k % 2 else (frame.width, frame.height)
    plan = resize_crop_plan(w, h, *bucket)
    x0, y0, x1, y1 = plan.box
    return upright_rgb(frame, reformatter, plan.resized)[y0:y1, x0:x1]


# ---- jobs (run in the sandbox) --------------------------------------------------------------
def probe_job(ctx: Any, uri: str, storage_options: dict, shortest_clip: int, max_pixels: int,
              max_frames: int, stage: str = "probe") -> Iterator[dict]:  # fmt: skip
    """One dict: ``VideoInfo`` fields; bad files, short/huge videos are ``SampleError``s."""
    from sama.video.probe import probe_video

    info = probe_video(uri, fs=input_fs(uri, storage_options))
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


def input_fs(uri: str, storage_options: dict) -> Any:
    """The fsspec filesystem for ``uri`` when storage options are set, else None (default)."""
    if not storage_options:
        return None
    import fsspec

    return fsspec.core.url_to_fs(uri, **storage_options)[0]


@dataclass
class ShotClip:
    """A finished shot and the frames of its clip (fewer than needed: re-decode them)."""

    start: int
    end: int
    frames: np.ndarray | None = None  # (window, H, W, 3), filled up to ``filled``
    filled: int = 0


@dataclass
class ShotCutter:
    """Feeds frames to a shot detector; keeps the first ``window`` frames of each shot.

    ``push(i, raw)`` / ``finish(n)`` return the shots that ended. ``to_small(raw)`` is the
    detector's input, ``to_clip(raw)`` the frame at bucket size (called once per kept frame),
    ``alloc(n)`` a buffer for ``n`` frames at bucket size.
    """

    detector: Any
    rate: Any
    window: int
    lag: int
    to_small: Callable[[Any], Any]
    to_clip: Callable[[Any], np.ndarray]
    alloc: Callable[[int], np.ndarray]
    shot: ShotClip = field(init=False)
    recent: deque = field(init=False, default_factory=deque)

    def __post_init__(self) -> None:
        self.shot = ShotClip(0, 0)

    def push(self, i: int, raw: Any) -> list[ShotClip]:
        from scenedetect import FrameTimecode

        self.recent.append((i, raw))
        cuts = self.detector.process_frame(FrameTimecode(i, self.rate), self.to_small(raw))
        done = [s for tc in cuts for s in self._cut(tc.frame_num)]
        while self.recent and self.recent[0][0] < i - self.lag:
            self._assign(*self.recent.popleft())
        return done

    def finish(self, num_frames: int) -> list[ShotClip]:
        from scenedetect import FrameTimecode

        tail = self.detector.post_process(FrameTimecode(num_frames, self.rate))
        done = [s for tc in tail if tc.frame_num < num_frames for s in self._cut(tc.frame_num)]
        while self.recent:
            self._assign(*self.recent.popleft())
        self.shot.end = num_frames
        return [*done, self.shot]

    def _assign(self, j: int, raw: Any) -> None:
        """Frame ``j`` belongs to the current shot for good: keep it if it is in the window."""
        s = self.shot
        if j < s.start + self.window and j == s.start + s.filled:
            if s.frames is None:
                s.frames = self.alloc(self.window)
            s.frames[s.filled] = self.to_clip(raw)
            s.filled += 1

    def _cut(self, c: int) -> list[ShotClip]:
        old = self.shot
        if c <= old.start:
            return []
        while self.recent and self.recent[0][0] < c:
            self._assign(*self.recent.popleft())
        old.end = c
        keep = c - old.start  # frames >= c assigned too early (a very late cut) move over
        new = ShotClip(c, c)
        if old.filled > keep:
            new.frames = self.alloc(self.window)
            moved = old.filled - keep
            new.frames[:moved] = old.frames[keep : old.filled]
            new.filled, old.filled = moved, keep
        self.shot = new
        return [old]


def cut_job(ctx: Any, uri: str, storage_options: dict, shots: Any, num_frames: int,
            min_frames: int, bucket: tuple[int, int], stage: str = "cut_clips") -> Iterator[dict]:  # fmt: skip
    """Single pass: ``{"plan", "frames", "luma", "motion"}`` per clip as its shot ends, then
    ``{"shot_lengths", "total", "redecoded"}``."""
    import av
    from av.video.reformatter import VideoReformatter

    from sama.video.probe import open_container, resolve, stream_fps, video_stream
    from sama.video.shots import frame_converter, make_detector

    fs, path = resolve(uri, input_fs(uri, storage_options))
    reformatter = VideoReformatter()
    w, h = bucket
    lengths, index, redecoded, n = [], 0, 0, 0
    with open_container(fs, path, uri, stage=stage) as container:
        stream = video_stream(container, uri, stage=stage)
        stream.codec_context.thread_type = "SLICE" if shots.decode_threads == 1 else "AUTO"
        stream.codec_context.thread_count = shots.decode_threads
        cutter = ShotCutter(make_detector(shots), stream_fps(stream), num_frames,
                            shots.min_shot_frames + 8, frame_converter(shots),
                            lambda raw: bucket_frame(raw, reformatter, bucket),
                            lambda k: ctx.alloc((k, h, w, 3)))  # fmt: skip

        def clips(done: list[ShotClip]) -> Iterator[dict]:
            nonlocal index, redecoded
            for shot in done:
                lengths.append(shot.end - shot.start)
                clip = _shot_clip(ctx, uri, storage_options, index, shot, num_frames, min_frames, bucket)
                index += 1
                if clip is not None:
                    redecoded += clip.pop("redecoded")
                    yield clip

        try:
            for n, raw in enumerate(container.decode(stream), start=1):
                ctx.check()
                yield from clips(cutter.push(n - 1, raw))
        except av.error.FFmpegError as e:
            raise SampleError(ErrorKind.DECODE_ERROR, f"{uri}: decoding failed after {n} frames: "
                              f"{e}", stage=stage) from e  # fmt: skip
        if n == 0:
            raise SampleError(ErrorKind.DECODE_ERROR, f"{uri}: decoded 0 frames", stage=stage)
        yield from clips(cutter.finish(n))
    yield {"shot_lengths": lengths, "total": n, "redecoded": redecoded, "decoded": n}


def _shot_clip(ctx: Any, uri: str, storage_options: dict, index: int, shot: ShotClip,
               num_frames: int, min_frames: int, bucket: tuple[int, int]) -> dict | None:  # fmt: skip
    length = shot.end - shot.start
    if length >= num_frames:
        n = num_frames
    elif min_frames and length >= min_frames:
        n = floor_4k1(length)
    else:
        return None
    plan = ClipPlan(index, 0, shot.start, shot.end, shot.start, n)
    if shot.filled >= n:
        clip_THWC, redecoded = shot.frames[:n], 0
    else:  # a cut reported later than the lag: decode this clip again
        frames = stream_frames(uri, storage_options, None, shot.start, n)
        clip_THWC, redecoded = take_clip(ctx, frames, plan, bucket), n
    luma, motion = clip_stats(clip_THWC)
    return {"plan": plan, "frames": clip_THWC, "luma": luma, "motion": motion, "redecoded": redecoded}


def stream_frames(uri: str, storage_options: dict, info: Any, start: int,
                  count: int) -> Iterator[tuple[int, np.ndarray]]:  # fmt: skip
    """``(index, frame_HWC)`` for frames ``start .. start+count-1`` of the video."""
    from sama.video.decode import iter_frames

    frames = iter_frames(uri, start=start, count=count, info=info, fs=input_fs(uri, storage_options))
    return enumerate(frames, start=start)


def take_clip(ctx: Any, frames: Iterator[tuple[int, np.ndarray]], plan: ClipPlan,
              bucket: tuple[int, int]) -> np.ndarray:  # fmt: skip
    """Consume the stream up to the end of ``plan``; its frames resized into the bucket."""
    from sama.video.buckets import resize_crop

    w, h = bucket
    clip_THWC = ctx.alloc((plan.num_frames, h, w, 3))
    got = 0
    for idx, frame_HWC in frames:
        if idx >= plan.start:
            ctx.check()
            clip_THWC[idx - plan.start] = resize_crop(frame_HWC, bucket)
            got += 1
        if idx + 1 >= plan.end:
            break
    if got < plan.num_frames:
        raise SampleError(ErrorKind.TRUNCATED, f"the video ended after {got} of the "
                          f"{plan.num_frames} frames of the clip at frame {plan.start}",
                          stage="decode")  # fmt: skip
    return clip_THWC


def detect_job(ctx: Any, uri: str, storage_options: dict, shots: Any) -> Iterator[dict]:
    """Two-pass, first pass: ``{"starts", "ends"}`` of every shot."""
    from sama.video.shots import detect_shots

    found = detect_shots(uri, shots, fs=input_fs(uri, storage_options), check=ctx.check)
    yield {"starts": [s.start_frame for s in found], "ends": [s.end_frame for s in found]}


def make_job(ctx: Any, uri: str, storage_options: dict, info: dict, plans: list[ClipPlan],
             bucket: tuple[int, int], seek_gap_frames: int) -> Iterator[dict]:  # fmt: skip
    """Two-pass, second pass: ``{"plan", "frames", "luma", "motion"}`` per planned clip, in
    frame order, each run of clips decoded as one stream."""
    from sama.video.probe import VideoInfo

    video = VideoInfo(**info)
    for run in decode_runs(plans, seek_gap_frames):
        frames = stream_frames(uri, storage_options, video, run[0].start, run[-1].end - run[0].start)
        for plan in run:
            clip_THWC = take_clip(ctx, frames, plan, bucket)
            luma, motion = clip_stats(clip_THWC)
            yield {"plan": plan, "frames": clip_THWC, "luma": luma, "motion": motion}
