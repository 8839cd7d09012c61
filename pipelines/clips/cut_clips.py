"""CutClips: shot detection and clip cutting in ONE decode of each video (the default path).

IN: the probe columns. OUT: what DetectShots + MakeClips give (``shot_detector``, the clip
columns, ``frames``), minus the shot lists. Fan-out: 1 video -> N clips, yielded as their shots
end. Resources: 1 CPU task per video.

Why: DetectShots decodes every frame, then MakeClips decodes the clip frames again, so every
kept frame is decoded twice. Here each decoded frame feeds the PySceneDetect detector (the same
detector, thresholds and low-resolution conversion as ``sama.video.shots``) and, if it falls in
the first clip of the current shot, is converted once to RGB at the bucket size. Memory holds
the current shot's clip at bucket size plus the last ``lag`` raw frames: a detector may report a
cut a few frames after it happens (AdaptiveDetector: its window, 2 frames), so a frame is
assigned to a shot only once no cut can still be reported before it. A cut reported later than
``lag`` (never seen in tests) costs a re-decode of that one clip, not a wrong clip.

Differences from the two-pass path: the decoder never skips deblocking (the clip frames need full
quality), so detector scores move slightly (< 0.6 on 0-255, sama.video.shots); ``long_shot=multi``
and ``shots.max_shot_frames`` need whole shots first and use the two-pass path
(``BuildConfig.single_pass``). A clip row is only yielded once the next one is ready, so the
last row of a video can announce how many rows the video made (``input_rows``, stages.base).

Legend: ``frame_HWC`` one RGB frame at the bucket size, ``clip_THWC`` a clip of them.
"""

from __future__ import annotations

import dataclasses
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pipelines.clips.make_clips import (
    CLIP_OUTPUTS,
    PROBE_EXTRAS,
    VIDEO_INPUTS,
    ClipPlan,
    clip_row,
    stream_frames,
    take_clip,
    unusable,
    video_bucket,
)
from pipelines.clips.probe_videos import input_fs
from pipelines.engine.stage import Batch, Row, Stage, clip_columns, is_error
from sama.errors import ErrorKind, SampleError
from sama.video.frames import floor_4k1


@dataclass
class ShotClip:
    """A finished shot and the frames of its clip (fewer than needed: re-decode them)."""

    start: int
    end: int
    frames: list[np.ndarray] = field(default_factory=list)


class ShotCutter:
    """Feeds frames to a shot detector; keeps the first ``window`` frames of each shot.

    ``push(i, raw)`` / ``finish(n)`` return the shots that ended. ``to_small(raw)`` is the
    detector's input, ``to_clip(raw)`` the frame at bucket size (called once per kept frame).
    """

    def __init__(
        self,
        detector: Any,
        rate: Any,
        window: int,
        lag: int,
        to_small: Callable[[Any], Any],
        to_clip: Callable[[Any], np.ndarray],
    ) -> None:
        self.detector, self.rate, self.window, self.lag = detector, rate, window, lag
        self.to_small, self.to_clip = to_small, to_clip
        self.shot = ShotClip(0, 0)
        self.recent: deque[tuple[int, Any]] = deque()  # raw frames not yet assigned to a shot

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
        if j < s.start + self.window and j == s.start + len(s.frames):
            s.frames.append(self.to_clip(raw))

    def _cut(self, c: int) -> list[ShotClip]:
        old = self.shot
        if c <= old.start:
            return []
        while self.recent and self.recent[0][0] < c:
            self._assign(*self.recent.popleft())
        old.end = c
        keep = c - old.start  # frames >= c assigned too early (a very late cut) move over
        self.shot = ShotClip(c, c, old.frames[keep:])
        old.frames = old.frames[:keep]
        return [old]


class CutClips(Stage):
    name = "cut_clips"
    engine_key = "clips"
    inputs = VIDEO_INPUTS
    outputs = (*clip_columns("shot_detector"), *CLIP_OUTPUTS)
    drops = PROBE_EXTRAS

    def __init__(self, cfg) -> None:
        super().__init__(cfg)
        self.frames_decoded = 0  # for the benchmarks: every frame of the single pass
        self.frames_redecoded = 0  # clip frames decoded a second time (very late cuts)

    @classmethod
    def enabled(cls, cfg) -> bool:
        return cfg.single_pass()

    def describe_detector(self) -> str:
        shots = dataclasses.replace(self.cfg.shots, skip_loop_filter=False)
        return f"{shots.describe()} single_pass"

    def process(self, batch: Batch) -> Iterator[Batch]:
        for row in batch:
            if is_error(row):
                yield [self.passthrough(row)]
                continue
            for out in self._cut(row):
                yield [out]

    def _cut(self, row: Row) -> Iterator[Row]:
        """Clip rows as shots end, each held back until the next exists (see module doc)."""
        held, made, lengths, total = None, 0, [], 0
        try:
            for index, shot in enumerate(self._shots(row)):
                lengths.append(shot.end - shot.start)
                total = shot.end
                clip = self._clip(row, index, shot)
                if clip is not None:
                    if held is not None:
                        yield held
                    held, made = clip, made + 1
        except SampleError as e:  # clips made so far stay; the error row announces the count
            if held is not None:
                yield held
            yield self.fail(row, e) | {"input_rows": made + 1}
            return
        if held is None:
            yield self.fail(row, unusable(lengths, total, self.cfg.clips.shortest_clip,
                                          self.name))  # fmt: skip
        else:
            yield held | {"input_rows": made}

    def _clip(self, row: Row, index: int, shot: ShotClip) -> Row | None:
        c = self.cfg.clips
        length = shot.end - shot.start
        if length >= c.num_frames:
            n = c.num_frames
        elif c.min_frames and length >= c.min_frames:
            n = floor_4k1(length)
        else:
            return None
        plan = ClipPlan(index, 0, shot.start, shot.end, shot.start, n)
        bucket = video_bucket(row, c.resolution)
        if len(shot.frames) >= n:
            clip_THWC = np.stack(shot.frames[:n])
        else:  # a cut reported later than the lag: decode this clip again
            frames = stream_frames(row, shot.start, n, self.cfg.input.storage_options)
            clip_THWC = take_clip(frames, plan, bucket)
            self.frames_redecoded += n
        out = self.merge(row, clip_row(row, plan, bucket, clip_THWC, 0))
        out["shot_detector"] = self.describe_detector()
        return out

    def _shots(self, row: Row) -> Iterator[ShotClip]:
        """Decode the video once; yield each shot (with its clip frames) as it ends."""
        import av

        from sama.video.probe import open_container, resolve, stream_fps, video_stream
        from sama.video.shots import frame_converter, make_detector

        uri, shots = row["source_uri"], self.cfg.shots
        fs, path = resolve(uri, input_fs(uri, self.cfg.input.storage_options))
        with open_container(fs, path, uri, stage=self.name) as container:
            stream = video_stream(container, uri, stage=self.name)
            stream.codec_context.thread_type = "SLICE" if shots.decode_threads == 1 else "AUTO"
            stream.codec_context.thread_count = shots.decode_threads
            cutter = ShotCutter(make_detector(shots), stream_fps(stream), self.cfg.clips.num_frames,
                                shots.min_shot_frames + 8, frame_converter(shots),
                                self._to_clip(row))  # fmt: skip
            n = 0
            try:
                for n, raw in enumerate(container.decode(stream), start=1):
                    self.frames_decoded += 1
                    yield from cutter.push(n - 1, raw)
            except av.error.FFmpegError as e:
                raise SampleError(ErrorKind.DECODE_ERROR, f"{uri}: decoding failed after {n} "
                                  f"frames: {e}", stage=self.name) from e  # fmt: skip
            if n == 0:
                raise SampleError(ErrorKind.DECODE_ERROR, f"{uri}: decoded 0 frames",
                                  stage=self.name)  # fmt: skip
            yield from cutter.finish(n)

    def _to_clip(self, row: Row) -> Callable[[Any], np.ndarray]:
        from av.video.reformatter import VideoReformatter

        from sama.video.buckets import resize_crop
        from sama.video.decode import upright_rgb

        bucket, reformatter = video_bucket(row, self.cfg.clips.resolution), VideoReformatter()
        return lambda raw: resize_crop(upright_rgb(raw, reformatter), bucket)
