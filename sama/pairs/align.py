"""Alignment checks of an edit pair: source and target must be encodable as the same clip.

SAMA's trainer puts source and target latents side by side (SAMA.md sections 1 and 4), so both
must have the same media type, the same frame count after the 4k+1 rule (and after a
per-corpus drop of the first frames, OpenVE-3M: 4), the same aspect bucket and the same frame
rate. A pair that disagrees is a ``SampleError(MISMATCH)`` naming both values, never a silent
crop (issue 6). These are pure functions on probe results; ``probe_media`` and ``read_image``
are the I/O that feeds them (images are read with PIL through fsspec).

Legend: ``image_HWC`` = height x width x 3, uint8 RGB.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from sama.config import check
from sama.errors import ErrorKind, SampleError
from sama.pairs.fields import guess_media_type
from sama.video.buckets import Size, buckets_for, nearest_bucket
from sama.video.frames import DEFAULT_NUM_FRAMES, floor_4k1, is_valid_num_frames
from sama.video.probe import VideoInfo, check_file, resolve

STAGE = "align_pair"
IMAGE_STAGE = "read_image"


@dataclass
class AlignConfig:
    """How strict the pair checks are (defaults: SAMA's 480p buckets, F = 81)."""

    resolution: int = 480  # bucket table scale (SAMA.md section 1)
    multiple: int = 16
    max_frames: int = DEFAULT_NUM_FRAMES  # frames used per video (4k+1); 0 = all that agree
    min_frames: int = 5  # fewer usable frames than this -> too_short
    max_fps_diff: float = 0.05  # |fps_source - fps_target| above this -> mismatch (1/s)

    def validate(self) -> None:
        check(self.resolution > 0 and self.multiple > 0, "align.resolution/multiple must be > 0")
        check(
            self.max_frames == 0 or is_valid_num_frames(self.max_frames),
            f"align.max_frames={self.max_frames} must be 0 or 4k+1 (e.g. 81)",
        )
        check(
            is_valid_num_frames(self.min_frames),
            f"align.min_frames={self.min_frames} must be 4k+1 (e.g. 5)",
        )
        check(self.max_fps_diff >= 0, "align.max_fps_diff must be >= 0")


@dataclass(frozen=True)
class ImageInfo:
    """What ``probe_image`` learns: display size (after EXIF orientation) and bytes."""

    uri: str
    width: int
    height: int
    size_bytes: int


MediaInfo = VideoInfo | ImageInfo


@dataclass(frozen=True)
class PairPlan:
    """What both sides of an aligned pair are encoded as."""

    media_type: str  # "image" | "video"
    start_frame: int  # frames dropped at the start of both videos; 0 for images
    num_frames: int  # 4k+1 frames used from each video; 1 for images
    fps: float | None  # source frame rate (None for images)
    bucket: Size  # (W, H)
    source_size: Size
    target_size: Size

    def to_row(self) -> dict[str, Any]:
        """The ``pairs/v1`` columns the plan fills."""
        return {
            "media_type": self.media_type,
            "start_frame": self.start_frame,
            "num_frames": self.num_frames,
            "fps": self.fps,
            "orig_width": self.source_size[0],
            "orig_height": self.source_size[1],
            "bucket_width": self.bucket[0],
            "bucket_height": self.bucket[1],
        }

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def media_type_of(info: MediaInfo) -> str:
    return "video" if isinstance(info, VideoInfo) else "image"


def _mismatch(what: str, source: Any, target: Any) -> SampleError:
    return SampleError(
        ErrorKind.MISMATCH, f"{what} differs: source {source}, target {target}", stage=STAGE
    )


def usable_frames(num_frames: int, drop_first_frames: int, max_frames: int) -> int:
    """Frames a video of ``num_frames`` gives after the drop and the 4k+1 rule (0 if none)."""
    n = floor_4k1(num_frames - drop_first_frames)
    return min(n, max_frames) if max_frames and n else n


def _check_frames(src: VideoInfo, tgt: VideoInfo, drop: int, cfg: AlignConfig) -> int:
    n_src = floor_4k1(src.num_frames - drop)
    n_tgt = floor_4k1(tgt.num_frames - drop)
    if n_src != n_tgt:
        raise SampleError(
            ErrorKind.MISMATCH,
            f"frame count differs: source {src.num_frames} frames, target {tgt.num_frames} "
            f"frames ({n_src} vs {n_tgt} after dropping {drop} and the 4k+1 rule)",
            stage=STAGE,
        )
    n = min(n_src, cfg.max_frames) if cfg.max_frames else n_src
    if n < cfg.min_frames:
        raise SampleError(
            ErrorKind.TOO_SHORT,
            f"{src.num_frames} frames leave {n} after dropping {drop} and the 4k+1 rule "
            f"(need >= {cfg.min_frames})",
            stage=STAGE,
        )
    return n


def align_pair(
    source: MediaInfo,
    target: MediaInfo,
    *,
    drop_first_frames: int = 0,
    media_hint: str | None = None,
    cfg: AlignConfig | None = None,
) -> PairPlan:
    """Check that ``source`` and ``target`` can be encoded as one pair; return the plan.

    Raises ``SampleError(MISMATCH)`` (media type, frame count after drop + 4k+1, aspect
    bucket, fps) or ``SampleError(TOO_SHORT)``. ``media_hint`` (from the manifest) must agree
    with what probing found.
    """
    cfg = cfg or AlignConfig()
    kind_src, kind_tgt = media_type_of(source), media_type_of(target)
    if kind_src != kind_tgt:
        raise _mismatch("media type", kind_src, kind_tgt)
    if media_hint and media_hint != kind_src:
        raise SampleError(
            ErrorKind.MISMATCH,
            f"manifest says {media_hint}, but source and target are {kind_src}s",
            stage=STAGE,
        )
    size_src, size_tgt = (source.width, source.height), (target.width, target.height)
    table = buckets_for(cfg.resolution, cfg.multiple)
    bucket_src, bucket_tgt = nearest_bucket(*size_src, table), nearest_bucket(*size_tgt, table)
    if bucket_src != bucket_tgt:
        raise _mismatch(
            "aspect bucket",
            f"{size_src[0]}x{size_src[1]} -> {bucket_src[0]}x{bucket_src[1]}",
            f"{size_tgt[0]}x{size_tgt[1]} -> {bucket_tgt[0]}x{bucket_tgt[1]}",
        )
    if isinstance(source, ImageInfo):
        return PairPlan("image", 0, 1, None, bucket_src, size_src, size_tgt)
    assert isinstance(target, VideoInfo)
    if abs(source.fps - target.fps) > cfg.max_fps_diff:
        raise _mismatch("fps", f"{source.fps:.3f}", f"{target.fps:.3f}")
    n = _check_frames(source, target, drop_first_frames, cfg)
    return PairPlan("video", drop_first_frames, n, source.fps, bucket_src, size_src, size_tgt)


# ---- images ------------------------------------------------------------------------------
def _open_image(uri: str, fs: Any = None):
    from PIL import Image, ImageOps, UnidentifiedImageError

    fs, path = resolve(uri, fs)
    size = check_file(fs, path, uri, stage=IMAGE_STAGE)
    with fs.open(path, "rb") as f:
        data = f.read()
    try:
        image = Image.open(io.BytesIO(data))
        image.load()
        image = ImageOps.exif_transpose(image)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        why = "not a known image format" if isinstance(e, UnidentifiedImageError) else str(e)
        raise SampleError(
            ErrorKind.NOT_AN_IMAGE, f"cannot decode image {uri}: {why}", stage=IMAGE_STAGE
        ) from e
    return image, size


def probe_image(uri: str, fs: Any = None) -> ImageInfo:
    """Size of the (fully decoded, upright) image at ``uri``; errors as ``SampleError``:
    ``NOT_FOUND``, ``ZERO_BYTE``, ``NOT_AN_IMAGE``."""
    image, size = _open_image(uri, fs)
    return ImageInfo(uri=str(uri), width=image.width, height=image.height, size_bytes=size)


def read_image(uri: str, fs: Any = None) -> np.ndarray:
    """``image_HWC`` uint8 RGB of the image at ``uri`` (any fsspec URI, ``tar://a::b`` too),
    upright per its EXIF orientation; errors as in ``probe_image``."""
    image, _ = _open_image(uri, fs)
    return np.asarray(image.convert("RGB"), dtype=np.uint8)


def probe_media(uri: str, media_hint: str | None = None, fs: Any = None) -> MediaInfo:
    """``probe_image`` or ``probe_video``, chosen by the file extension, else by the hint
    (unknown extensions without a hint are tried as images first, then as videos). A hint that
    contradicts the extension is left for ``align_pair`` to report as a mismatch."""
    from sama.video.probe import probe_video

    kind = guess_media_type(uri) or media_hint
    if kind == "image":
        return probe_image(uri, fs)
    if kind == "video":
        return probe_video(uri, fs)
    try:
        return probe_image(uri, fs)
    except SampleError as e:
        if e.kind != ErrorKind.NOT_AN_IMAGE:
            raise
    return probe_video(uri, fs)


def pair_probe_job(ctx: Any, source_uri: str, target_uri: str, media_hint: str | None,
                   drop_first_frames: int, cfg: AlignConfig, storage_options: dict,
                   max_pixels: int, max_frames: int) -> Iterator[dict]:  # fmt: skip
    """Probe both sides and align them (``sama.sandbox`` job for the pair build's probe).

    Yields ``{"plan": PairPlan.to_row(), "source_probe", "target_probe"}`` (video probes as
    dicts, None for images); a side over ``max_pixels`` / ``max_frames`` is ``too_large``."""
    from sama.video.probe import input_fs

    infos = []
    for uri in (source_uri, target_uri):
        info = probe_media(uri, media_hint, fs=input_fs(uri, storage_options))
        if info.width * info.height > max_pixels:
            raise SampleError(ErrorKind.TOO_LARGE, f"{uri}: {info.width}x{info.height} is more "
                              f"than budget.max_pixels={max_pixels}", stage="probe_pairs")  # fmt: skip
        if isinstance(info, VideoInfo) and info.num_frames > max_frames:
            raise SampleError(ErrorKind.TOO_LARGE, f"{uri}: {info.num_frames} frames is more "
                              f"than budget.max_frames={max_frames}", stage="probe_pairs")  # fmt: skip
        infos.append(info)
        ctx.check()
    plan = align_pair(infos[0], infos[1], drop_first_frames=drop_first_frames,
                      media_hint=media_hint, cfg=cfg)  # fmt: skip
    probes = [i.to_dict() if isinstance(i, VideoInfo) else None for i in infos]
    yield {"plan": plan.to_row(), "source_probe": probes[0], "target_probe": probes[1]}
