"""Shot detection: split a video into shots before clips are cut from them.

Why it is written this way:

- A shot is what lies between boundaries, and a boundary is a range of frames that belongs to
  no shot (``sama.video.boundaries``): a hard cut, a jump cut, and every frame of a dissolve,
  fade or wipe, so no clip contains a transition. The default detector (``transitions``,
  ``sama.video.transitions``) finds all of them on thumbnails; PySceneDetect's
  ``ContentDetector``/``AdaptiveDetector`` (hard cuts only) stay available for comparison.
- Every detector is a streaming ``BoundaryDetector`` (``make_boundary_detector``): the
  two-pass path (``detect_shots``) and a single-pass clip cutter feed it the same frames from
  ``frame_converter``, so both find the same shots.
- Frames are decoded with PyAV (FFmpeg), not OpenCV or decord: OpenCV's reader silently returns
  0 frames on AV1 (decord's bundled FFmpeg lacks AV1 too), which would turn a whole dataset
  into "no shots". The ``opencv`` backend exists only for comparison and local files.
- ``fast`` preset: for ``yuv420p`` (nearly all H.264/HEVC/AV1 8-bit) the decoded planes are
  area-downscaled with OpenCV and converted to BGR at the detector's size (``transitions``: a
  64 px thumbnail; PySceneDetect's: 256 px wide; ``sama.video.detector_input``), so the full
  frame is never converted. With ``skip_loop_filter`` the H.264/HEVC decoder also skips in-loop
  deblocking: on the labelled 640x360 set, detection ran at 1.25x of a plain decode with it and
  1.09x without (bench/bench_shots.py), and the full-quality ``accurate`` preset found exactly
  the same boundaries. No frame is ever skipped. ``accurate`` feeds full-resolution BGR frames.
- Nothing is dropped silently: the shots and the boundaries together cover ``[0, num_frames)``.
  A first or last shot may be short; deciding which shots are usable is the clip maker's job,
  so it can record a ``too_short`` error row instead of a shot vanishing here.
- A video that decodes to zero frames raises ``SampleError`` (never an empty list).

Legend: ``frame_HWC`` uint8 BGR image, H rows x W columns x 3 channels.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields
from fractions import Fraction
from typing import TYPE_CHECKING, Any, Literal

from sama.errors import ConfigError, ErrorKind, SampleError
from sama.video.boundaries import (
    Boundary,
    BoundaryDetector,
    SceneDetectBoundaries,
    shots_from_boundaries,
)
from sama.video.detector_input import i420_to_small_bgr, opencv_frames, small_size
from sama.video.probe import check_file, is_local, open_container, resolve, stream_fps, video_stream
from sama.video.salvage import SalvageDecoder
from sama.video.transition_params import TransitionParams
from sama.video.transitions import THUMB_SIDE, TransitionDetector

if TYPE_CHECKING:
    import numpy as np

STAGE = "detect_shots"
_PRESETS = ("fast", "accurate")
_DETECTORS = ("transitions", "content", "adaptive")
_BACKENDS = ("auto", "pyav", "opencv")
# Pixel formats whose planes the fast path downscales itself (8-bit 4:2:0, 3 planes).
_I420_FORMATS = ("yuv420p", "yuvj420p")
_SCENEDETECT_WIDTH = 256  # content/adaptive fast preset width (PySceneDetect's own downscale)


@dataclass
class ShotConfig:
    """How shots are detected. ``describe()`` is recorded per clip row as ``shot_detector``.

    ``detector``: ``transitions`` (default; cuts, jump cuts, dissolves, fades, wipes, see
    ``sama.video.transitions``) or PySceneDetect's ``content`` / ``adaptive`` (hard cuts only,
    kept for comparison). Thresholds are on 0-255 mean absolute differences of thumbnails.
    """

    preset: Literal["fast", "accurate"] = "fast"
    detector: Literal["transitions", "content", "adaptive"] = "transitions"
    threshold: float = 27.0  # content: mean HSV change (0-255) that makes a cut
    adaptive_threshold: float = 3.0  # adaptive: score / rolling-mean score ratio
    min_shot_frames: int = 15  # content/adaptive: cuts closer than this are merged
    cut_threshold: float = 12.0  # transitions: ring distance of a hard cut
    jump_ratio: float = 3.0  # transitions: jump cut = ring / local motion level above this
    blend_threshold: float = 16.0  # transitions: distance across a dissolve/fade's midpoint
    blend_residual: float = 0.25  # transitions: midpoint's distance off the blend, relative
    flat_std: float = 8.0  # transitions: luma std below which a frame is flat (fade hold)
    transition_margin: int = 1  # transitions: frames added each side of a gradual transition
    max_transition_frames: int = 30  # transitions: longest dissolve/fade measured whole
    max_shot_frames: int = 0  # 0 = unlimited; longer shots are split into equal parts
    downscale_width: int = 0  # fast preset: detector input width (never upscales); 0 = the
    # detector's own: transitions works on 64 px thumbnails (longest side), content/adaptive 256
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
        self.transition_params().validate()
        if self.max_shot_frames < 0 or 0 < self.max_shot_frames < max(1, self.min_shot_frames):
            raise ConfigError(
                f"shots.max_shot_frames={self.max_shot_frames} must be 0 (unlimited) or >= "
                f"min_shot_frames ({self.min_shot_frames})"
            )
        if self.downscale_width != 0 and self.downscale_width < 16:
            raise ConfigError(
                f"shots.downscale_width={self.downscale_width} must be 0 (the detector's own) "
                "or >= 16"
            )
        if self.decode_threads < 0:
            raise ConfigError(f"shots.decode_threads={self.decode_threads} must be >= 0 (0 = auto)")
        return self

    def transition_params(self) -> TransitionParams:
        """The ``transitions`` detector's thresholds (the fields of the same names)."""
        return TransitionParams(**{f.name: getattr(self, f.name) for f in fields(TransitionParams)})

    def describe(self) -> str:
        """One line naming everything that changes the cuts; stored as ``shot_detector``."""
        if self.detector == "transitions":
            det = self.transition_params().describe()
        else:
            if self.detector == "content":
                det = f"content(threshold={self.threshold:g}"
            else:
                det = f"adaptive(adaptive_threshold={self.adaptive_threshold:g}"
            det = f"scenedetect-{_scenedetect_version()} {det}, min_shot_frames={self.min_shot_frames})"
        preset = "accurate"
        if self.preset == "fast":
            nolf = ", skip_loop_filter" if self.skip_loop_filter else ""
            size = (
                f"width={self.downscale_width}"
                if self.downscale_width
                else (
                    f"side={THUMB_SIDE}"
                    if self.detector == "transitions"
                    else f"width={_SCENEDETECT_WIDTH}"
                )
            )
            preset = f"fast({size}{nolf})"
        return (
            f"{det} preset={preset} max_shot_frames={self.max_shot_frames} backend={self.backend}"
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

    Returns the shots between the boundaries (``detect_boundaries``), split to
    ``max_shot_frames`` if set: transition frames belong to no shot. Raises ``SampleError``
    (not_found, zero_byte, not_a_video, truncated, unsupported_codec, decode_error) for a bad
    input and ``ConfigError`` for a bad config.
    """
    cfg = (cfg or ShotConfig()).validate()
    detected = detect_boundaries(uri, cfg, fs, check)
    spans = shots_from_boundaries(detected.boundaries, detected.num_frames, cfg.max_shot_frames)
    fps = float(detected.fps)
    return [Shot(i, s, e, s / fps, e / fps) for i, (s, e) in enumerate(spans)]


@dataclass(frozen=True)
class Detected:
    """What ``detect_boundaries`` found: the boundaries, the frame count (lost frames included),
    the rate, and what was salvaged from a damaged file ("" when nothing was lost)."""

    boundaries: list[Boundary]
    num_frames: int
    fps: Fraction
    salvage: str = ""


def detect_boundaries(
    uri: str, cfg: ShotConfig | None = None, fs: Any = None, check: Callable[[], None] | None = None
) -> Detected:
    """Decode ``uri`` once and run ``make_boundary_detector(cfg)`` over every frame;
    ``check()`` runs before each frame (a deadline: ``sama.sandbox.JobContext.check``)."""
    cfg = (cfg or ShotConfig()).validate()
    fs, path = resolve(uri, fs)
    check_file(fs, path, uri, stage=STAGE)
    if cfg.backend == "opencv":
        if not is_local(fs):
            raise ConfigError(
                f"shots.backend='opencv' reads local files only, not {uri!r}; use backend='pyav'"
            )
        size = (lambda w, h: _small_size(cfg, w, h)) if cfg.preset == "fast" else None
        rate, frames = opencv_frames(uri, path, size, STAGE)
        return _detect(rate, frames, cfg, [], check)
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
        notes: list[str] = []
        frames = _pyav_iter(uri, container, stream, frame_converter(cfg), notes)
        return _detect(rate, frames, cfg, notes, check)


def _detect(
    rate: Fraction, frames: Iterator[tuple[int, Any]], cfg: ShotConfig, notes: list[str],
    check: Callable[[], None] | None = None,
) -> Detected:
    detector = make_boundary_detector(cfg, rate)
    found: list[Boundary] = []
    num_frames = 0
    for i, frame_HWC in frames:
        if check is not None:  # a deadline (sama.sandbox.JobContext.check)
            check()
        found += detector.push(i, frame_HWC)
        num_frames = i + 1
    # The frame iterators raise SampleError on 0 frames, so num_frames >= 1 here.
    found += detector.finish(num_frames)
    return Detected(found, num_frames, rate, "; ".join(notes))


def shot_bounds(cuts: list[int], num_frames: int, max_shot_frames: int = 0) -> list[int]:
    """Shot boundaries ``[0, c1, ..., num_frames]`` from cut frames (first frame of a new shot).

    A shot longer than ``max_shot_frames`` (> 0) is split into ``ceil(len / max)`` near-equal
    parts, so no part is a tiny remainder.
    """
    inner = sorted({int(c) for c in cuts if 0 < int(c) < num_frames})
    spans = shots_from_boundaries([Boundary(c, c, "cut") for c in inner], num_frames,
                                  max_shot_frames)  # fmt: skip
    return [0] + [e for _, e in spans]


def make_boundary_detector(cfg: ShotConfig, rate: Fraction | float = 25) -> BoundaryDetector:
    """A fresh streaming detector for ``cfg`` (the contract of ``sama.video.boundaries``).

    Feed it ``frame_converter(cfg)(av_frame)`` for every decoded frame: ``push(i, small)``
    then ``finish(n)``. ``detect_shots`` does exactly this, so a single-pass cutter that does
    the same finds the same shots. ``rate`` matters only to PySceneDetect's detectors.
    """
    cfg.validate()
    if cfg.detector == "transitions":
        return TransitionDetector(cfg.transition_params())
    from scenedetect import AdaptiveDetector, ContentDetector

    if cfg.detector == "adaptive":
        det = AdaptiveDetector(
            adaptive_threshold=cfg.adaptive_threshold, min_scene_len=cfg.min_shot_frames
        )
    else:
        det = ContentDetector(threshold=cfg.threshold, min_scene_len=cfg.min_shot_frames)
    return SceneDetectBoundaries(det, rate, cfg.min_shot_frames)


def _pyav_iter(
    uri: str, container: Any, stream: Any, convert: Callable[[Any], Any], into: list[str]
) -> Iterator[tuple[int, Any]]:
    """``(index, detector input)``; corrupt packets are skipped (``sama.video.salvage``), and
    what was lost is appended to ``into`` once the stream is done."""
    decoder = SalvageDecoder(container, stream, uri, STAGE)
    for index, frame in decoder:
        yield index, convert(frame)
    if decoder.note():
        into.append(decoder.note())


def frame_converter(cfg: ShotConfig) -> Callable[[Any], np.ndarray]:
    """The detector's input: ``av.VideoFrame -> frame_HWC`` BGR uint8.

    ``accurate`` keeps the full resolution; ``fast`` downscales (never up) to
    ``cfg.downscale_width``, or by default to what the detector works on (``transitions``: a
    thumbnail with a ``THUMB_SIDE`` px longest side, measured 107 us per 640x360 frame against
    302 us at 256 px; ``content``/``adaptive``: 256 px wide), with the I420 plane path for 8-bit
    4:2:0 frames (see the module docstring).
    """
    from av.video.reformatter import VideoReformatter

    reformatter = VideoReformatter()  # one swscale context per stream, not one per frame

    def full(frame: Any) -> Any:
        return reformatter.reformat(frame, format="bgr24").to_ndarray()

    if cfg.preset == "accurate":
        return full

    def convert(frame: Any) -> Any:
        width, height = _small_size(cfg, frame.width, frame.height)
        if width >= frame.width:
            return full(frame)
        if frame.format.name in _I420_FORMATS and frame.width % 2 == 0 and frame.height % 2 == 0:
            return i420_to_small_bgr(frame, width, height)
        out = reformatter.reformat(frame, width=width, height=height, format="bgr24",
                                   interpolation="AREA")  # fmt: skip
        return out.to_ndarray()

    return convert


def _small_size(cfg: ShotConfig, w: int, h: int) -> tuple[int, int]:
    """The fast preset's detector input size for a ``w`` x ``h`` frame (``small_size``)."""
    side = THUMB_SIDE if cfg.detector == "transitions" and not cfg.downscale_width else 0
    return small_size(w, h, cfg.downscale_width or _SCENEDETECT_WIDTH, side)
