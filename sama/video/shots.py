"""Shot detection: split a video into shots (camera cuts) before clips are cut from them.

Why it is written this way:

- Frames are decoded with PyAV (FFmpeg), not OpenCV or decord: OpenCV's reader silently returns
  0 frames on AV1 (decord's bundled FFmpeg lacks AV1 too), which would turn a whole dataset
  into "no shots".
  The ``opencv`` backend exists only for comparison and local files.
- PySceneDetect's detectors (``ContentDetector``/``AdaptiveDetector``) are fed frame by frame
  through ``process_frame``; no ``SceneManager``/``VideoStream``, so one decode loop serves any
  file object (fsspec ``memory://``, ``s3://``...) and we choose the decode resolution.
- ``fast`` preset: for ``yuv420p`` (nearly all H.264/HEVC/AV1 8-bit) the decoded planes are
  area-downscaled with OpenCV and converted to BGR at ``downscale_width`` (~0.6 ms per 720p
  frame, a little less than FFmpeg's swscale area scaler, without its aliasing fast-bilinear),
  so the detector works on ~37k pixels instead of ~920k. With ``skip_loop_filter`` the H.264/
  HEVC decoder also skips in-loop deblocking: ~15% faster decoding (bench/bench_shots.py), while
  frame scores moved by < 0.6 (threshold 27) on our synthetic 720p tests, even at crf 36 with
  keyframes away from the cuts.
  No frame is ever skipped. ``accurate`` feeds full-quality, full-resolution BGR frames.
- Nothing is dropped: the returned shots tile ``[0, num_frames)`` exactly. ``min_shot_frames``
  only tells the detector to merge cuts closer than that (flash filter); a first or last shot may
  still be shorter. Deciding which shots are usable is the clip maker's job, so it can record a
  ``too_short`` error row instead of a shot vanishing here.
- A video that decodes to zero frames raises ``SampleError`` (never an empty list).

Legend: ``frame_HWC`` uint8 BGR image, H rows x W columns x 3 channels.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING, Any, Literal

from sama.errors import ConfigError, ErrorKind, SampleError
from sama.video.probe import check_file, is_local, open_container, resolve, stream_fps, video_stream

if TYPE_CHECKING:
    import numpy as np

STAGE = "detect_shots"
_PRESETS = ("fast", "accurate")
_DETECTORS = ("content", "adaptive")
_BACKENDS = ("auto", "pyav", "opencv")
# Pixel formats whose planes the fast path downscales itself (8-bit 4:2:0, 3 planes).
_I420_FORMATS = ("yuv420p", "yuvj420p")


@dataclass
class ShotConfig:
    """How shots are detected. ``describe()`` is recorded per clip row as ``shot_detector``."""

    preset: Literal["fast", "accurate"] = "fast"
    detector: Literal["content", "adaptive"] = "content"
    threshold: float = 27.0  # ContentDetector: mean HSV change (0-255) that makes a cut
    adaptive_threshold: float = 3.0  # AdaptiveDetector: score / rolling-mean score ratio
    min_shot_frames: int = 15  # cuts closer than this are merged by the detector
    max_shot_frames: int = 0  # 0 = unlimited; longer shots are split into equal parts
    downscale_width: int = 256  # fast preset: detector input width (never upscales)
    backend: Literal["auto", "pyav", "opencv"] = "pyav"  # auto = pyav
    decode_threads: int = 1  # FFmpeg decoder threads; 1 keeps Ray's CPU accounting honest, 0 = auto
    skip_loop_filter: bool = True  # fast preset: the decoder skips deblocking (see module doc)

    def validate(self) -> ShotConfig:
        """Raise ``ConfigError`` naming the field and the fix; return self when valid."""
        for name, allowed in (
            ("preset", _PRESETS),
            ("detector", _DETECTORS),
            ("backend", _BACKENDS),
        ):
            if getattr(self, name) not in allowed:
                raise ConfigError(
                    f"shots.{name}={getattr(self, name)!r} is invalid; use one of {list(allowed)}"
                )
        if not 0.0 < self.threshold <= 255.0:
            raise ConfigError(f"shots.threshold={self.threshold} must be in (0, 255] (default 27)")
        if self.adaptive_threshold <= 0.0:
            raise ConfigError(
                f"shots.adaptive_threshold={self.adaptive_threshold} must be > 0 (default 3.0)"
            )
        if self.min_shot_frames < 0:
            raise ConfigError(f"shots.min_shot_frames={self.min_shot_frames} must be >= 0")
        if self.max_shot_frames < 0 or 0 < self.max_shot_frames < max(1, self.min_shot_frames):
            raise ConfigError(
                f"shots.max_shot_frames={self.max_shot_frames} must be 0 (unlimited) or >= "
                f"min_shot_frames ({self.min_shot_frames})"
            )
        if self.downscale_width < 16:
            raise ConfigError(f"shots.downscale_width={self.downscale_width} must be >= 16")
        if self.decode_threads < 0:
            raise ConfigError(f"shots.decode_threads={self.decode_threads} must be >= 0 (0 = auto)")
        return self

    def describe(self) -> str:
        """One line naming everything that changes the cuts; stored as ``shot_detector``."""
        if self.detector == "content":
            det = f"content(threshold={self.threshold:g}"
        else:
            det = f"adaptive(adaptive_threshold={self.adaptive_threshold:g}"
        det += f", min_shot_frames={self.min_shot_frames})"
        preset = "accurate"
        if self.preset == "fast":
            nolf = ", skip_loop_filter" if self.skip_loop_filter else ""
            preset = f"fast(width={self.downscale_width}{nolf})"
        return (
            f"scenedetect-{_scenedetect_version()} {det} preset={preset} "
            f"max_shot_frames={self.max_shot_frames} backend={self.backend}"
        )


@dataclass(frozen=True)
class Shot:
    """One shot: frames ``[start_frame, end_frame)``; seconds are ``frame / fps``."""

    index: int
    start_frame: int
    end_frame: int  # exclusive
    start_s: float
    end_s: float

    @property
    def num_frames(self) -> int:
        return self.end_frame - self.start_frame


def _scenedetect_version() -> str:
    # importlib.metadata avoids importing scenedetect (and cv2) just to name the version.
    from importlib import metadata

    for dist in ("scenedetect-headless", "scenedetect"):
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return "unknown"


def detect_shots(
    uri: str, cfg: ShotConfig | None = None, fs: Any = None, check: Callable[[], None] | None = None
) -> list[Shot]:
    """Detect the shots of the video at ``uri`` (any fsspec URL, or a path inside ``fs``).

    Returns shots that tile all decoded frames, split to ``max_shot_frames`` if set. Raises
    ``SampleError`` (not_found, zero_byte, not_a_video, truncated, unsupported_codec,
    decode_error) for a bad input and ``ConfigError`` for a bad config.
    """
    cfg = (cfg or ShotConfig()).validate()
    fs, path = resolve(uri, fs)
    check_file(fs, path, uri, stage=STAGE)
    if cfg.backend == "opencv":
        if not is_local(fs):
            raise ConfigError(
                f"shots.backend='opencv' reads local files only, not {uri!r}; use backend='pyav'"
            )
        return _detect(*_opencv_frames(uri, path, cfg), cfg, check)
    # Same opening and error kinds as probing (local files by path, others via fsspec).
    with open_container(fs, path, uri, stage=STAGE) as container:
        stream = video_stream(container, uri, stage=STAGE)
        rate = stream_fps(stream)
        if not rate:
            raise SampleError(ErrorKind.NOT_A_VIDEO, f"{uri}: no frame rate", stage=STAGE)
        stream.codec_context.thread_type = "SLICE" if cfg.decode_threads == 1 else "AUTO"
        stream.codec_context.thread_count = cfg.decode_threads
        if cfg.preset == "fast" and cfg.skip_loop_filter:
            stream.codec_context.options = {"skip_loop_filter": "all"}
        frames = _pyav_iter(uri, container, stream, frame_converter(cfg))
        return _detect(rate, frames, cfg, check)


def _detect(
    rate: Fraction, frames: Iterator[Any], cfg: ShotConfig, check: Callable[[], None] | None = None
) -> list[Shot]:
    """Feed frames to a PySceneDetect detector; cut frames -> shots."""
    from scenedetect import FrameTimecode

    detector = make_detector(cfg)
    cuts: list[int] = []
    num_frames = 0
    for i, frame_HWC in enumerate(frames):
        if check is not None:  # a deadline (sama.sandbox.JobContext.check)
            check()
        cuts += [tc.frame_num for tc in detector.process_frame(FrameTimecode(i, rate), frame_HWC)]
        num_frames = i + 1
    # The frame iterators raise SampleError on 0 frames, so num_frames >= 1 here.
    cuts += [tc.frame_num for tc in detector.post_process(FrameTimecode(num_frames, rate))]
    bounds = shot_bounds(cuts, num_frames, cfg.max_shot_frames)
    fps = float(rate)
    return [
        Shot(i, s, e, s / fps, e / fps)
        for i, (s, e) in enumerate(zip(bounds, bounds[1:], strict=False))
    ]


def shot_bounds(cuts: list[int], num_frames: int, max_shot_frames: int = 0) -> list[int]:
    """Shot boundaries ``[0, c1, ..., num_frames]`` from cut frames (first frame of a new shot).

    A shot longer than ``max_shot_frames`` (> 0) is split into ``ceil(len / max)`` near-equal
    parts, so no part is a tiny remainder.
    """
    inner = sorted({int(c) for c in cuts if 0 < int(c) < num_frames})
    bounds = [0]
    for end in [*inner, num_frames]:
        start = bounds[-1]
        parts = math.ceil((end - start) / max_shot_frames) if max_shot_frames > 0 else 1
        bounds += [start + round(j * (end - start) / parts) for j in range(1, parts)] + [end]
    return bounds


def make_detector(cfg: ShotConfig) -> Any:
    """A fresh PySceneDetect detector for ``cfg`` (``ContentDetector`` or ``AdaptiveDetector``).

    Feed it ``frame_HWC`` from ``frame_converter(cfg)`` through ``process_frame`` and finish with
    ``post_process``; ``detect_shots`` and the single-pass clip cutter (pipelines ``CutClips``)
    both do, so the two paths use the same detector and thresholds.
    """
    from scenedetect import AdaptiveDetector, ContentDetector

    if cfg.detector == "adaptive":
        return AdaptiveDetector(
            adaptive_threshold=cfg.adaptive_threshold, min_scene_len=cfg.min_shot_frames
        )
    return ContentDetector(threshold=cfg.threshold, min_scene_len=cfg.min_shot_frames)


def _pyav_iter(
    uri: str, container: Any, stream: Any, convert: Callable[[Any], Any]
) -> Iterator[Any]:
    import av

    n = 0
    try:
        for frame in container.decode(stream):
            yield convert(frame)
            n += 1
    except av.error.FFmpegError as e:
        kind = ErrorKind.UNSUPPORTED_CODEC if _no_decoder(e) else ErrorKind.DECODE_ERROR
        msg = f"{uri}: {stream.codec_context.name} failed after {n} frames: {e}"
        raise SampleError(kind, msg, stage=STAGE) from e
    if n == 0:
        msg = f"{uri}: the {stream.codec_context.name} stream decoded 0 frames"
        raise SampleError(ErrorKind.DECODE_ERROR, msg, stage=STAGE)


def _no_decoder(e: Exception) -> bool:
    import av

    unsupported = (
        av.error.DecoderNotFoundError,
        av.error.PatchWelcomeError,
        av.error.NotImplementedError,
    )
    return isinstance(e, unsupported)


def frame_converter(cfg: ShotConfig) -> Callable[[Any], np.ndarray]:
    """The detector's input: ``av.VideoFrame -> frame_HWC`` BGR uint8.

    ``accurate`` keeps the full resolution; ``fast`` downscales to ``cfg.downscale_width`` (never
    up), with the I420 plane path for 8-bit 4:2:0 frames (see the module docstring).
    """
    if cfg.preset == "accurate":
        return lambda frame: frame.to_ndarray(format="bgr24")
    width = cfg.downscale_width

    def convert(frame: Any) -> Any:
        if frame.width <= width:
            return frame.to_ndarray(format="bgr24")
        # Even output height keeps 4:2:0 chroma planes exactly half size.
        height = max(2, round(frame.height * width / frame.width / 2) * 2)
        if frame.format.name in _I420_FORMATS and frame.width % 2 == 0 and frame.height % 2 == 0:
            return _i420_to_small_bgr(frame, width, height)
        return frame.to_ndarray(format="bgr24", width=width, height=height, interpolation="AREA")

    return convert


def _i420_to_small_bgr(frame: Any, width: int, height: int) -> Any:
    """Area-downscale the Y, U, V planes in place of the decoder's buffers, then YUV->BGR."""
    import cv2
    import numpy as np

    i420 = np.empty((height * 3 // 2, width), np.uint8)
    targets = (
        i420[:height],
        i420[height:].reshape(-1)[: height * width // 4].reshape(height // 2, width // 2),
        i420[height:].reshape(-1)[height * width // 4 :].reshape(height // 2, width // 2),
    )
    for plane, target in zip(frame.planes, targets, strict=True):
        src = np.frombuffer(plane, np.uint8).reshape(-1, plane.line_size)
        src = src[: plane.height, : plane.width]
        cv2.resize(src, target.shape[::-1], dst=target, interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(i420, cv2.COLOR_YUV2BGR_I420)


def _opencv_frames(uri: str, path: str, cfg: ShotConfig) -> tuple[Fraction, Iterator[Any]]:
    import cv2

    cap = cv2.VideoCapture(path)
    if not cap.isOpened():
        raise SampleError(ErrorKind.NOT_A_VIDEO, f"{uri}: OpenCV cannot open it", stage=STAGE)
    fps = cap.get(cv2.CAP_PROP_FPS) or 0.0
    if fps <= 0:
        cap.release()
        raise SampleError(ErrorKind.NOT_A_VIDEO, f"{uri}: no frame rate", stage=STAGE)
    return Fraction(fps).limit_denominator(1001000), _opencv_iter(uri, cap, cfg)


def _opencv_iter(uri: str, cap: Any, cfg: ShotConfig) -> Iterator[Any]:
    import cv2

    n = 0
    try:
        while True:
            ok, frame_HWC = cap.read()
            if not ok:
                break
            h, w = frame_HWC.shape[:2]
            if cfg.preset == "fast" and w > cfg.downscale_width:
                size = (cfg.downscale_width, max(2, round(h * cfg.downscale_width / w / 2) * 2))
                frame_HWC = cv2.resize(frame_HWC, size, interpolation=cv2.INTER_AREA)
            yield frame_HWC
            n += 1
    finally:
        cap.release()
    if n == 0:
        # OpenCV reads 0 frames from AV1 (and other codecs its FFmpeg lacks) without an error.
        raise SampleError(
            ErrorKind.UNSUPPORTED_CODEC,
            f"{uri}: OpenCV decoded 0 frames (AV1?); use shots.backend='pyav'",
            stage=STAGE,
        )
