"""Probe a video: size, fps, frame count, codec, rotation, and whether it can be decoded at all.

Probing is the first thing the build does with an input, so it is where a bad file must turn
into a ``SampleError`` of the right kind (CONVENTIONS.md rule 5) instead of a crash later:
missing, zero bytes, not a media container, no decoder, truncated, corrupt. It reads through
fsspec, so local paths, ``file://``, ``memory://`` and remote URIs all work; local files are
handed to PyAV by path (native I/O), others as fsspec file objects.

Frame indices everywhere in ``sama`` count decoded frames in presentation order from 0, and
frames come out upright: ``width``/``height`` are the display size after ``rotation``.
"""

from __future__ import annotations

import contextlib
import importlib.util
import posixpath
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from fractions import Fraction
from typing import Any

from sama.errors import ErrorKind, SampleError

# Codecs decord 0.6's bundled FFmpeg decodes reliably; anything else (AV1 above all) goes to
# PyAV, whose wheel bundles libdav1d.
DECORD_CODECS = frozenset(
    {"h264", "hevc", "mpeg4", "mpeg2video", "mpeg1video", "vp8", "vp9", "mjpeg", "h263"}
)

STAGE = "probe"
TAIL_TOLERANCE_S = 0.5  # see tail_tolerance_s
TAIL_TOLERANCE_FRAMES = 10


@dataclass(frozen=True)
class VideoInfo:
    """What ``probe_video`` learns about one video.

    ``width``/``height`` are the display size (after ``rotation``, which is how the frames from
    ``sama.video.decode`` come out); ``rotation`` is the counter-clockwise angle in degrees
    (0/90/180/270) from the display matrix; ``codec`` is the canonical codec name (``h264``,
    ``av1``...); ``backend`` is the decoder that ``backend="auto"`` will use. ``salvage``
    describes damage that still leaves frames to use (a cut-off tail, corrupt packets before
    the first frame): a note for the errors table, not an error.
    """

    uri: str
    width: int
    height: int
    fps: float
    num_frames: int
    duration_s: float
    codec: str
    rotation: int
    size_bytes: int
    backend: str
    salvage: str = ""  # what is damaged but still usable ("" for a sound file); see probe_video

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def resolve(uri: str, fs: Any = None) -> tuple[Any, str]:
    """``(filesystem, path)`` for ``uri``; with ``fs`` given, ``uri`` is a path on it."""
    if fs is not None:
        return fs, fs._strip_protocol(uri)
    import fsspec

    return fsspec.core.url_to_fs(str(uri))


def input_fs(uri: str, storage_options: dict) -> Any:
    """The fsspec filesystem for ``uri`` when storage options are set, else None (the
    default one ``resolve`` picks)."""
    if not storage_options:
        return None
    import fsspec

    return fsspec.core.url_to_fs(uri, **storage_options)[0]


def is_local(fs: Any) -> bool:
    """True for fsspec's local filesystem (decord and native PyAV I/O need a real path)."""
    protocol = fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,)
    return "file" in protocol or "local" in protocol


def decord_available() -> bool:
    return importlib.util.find_spec("decord") is not None


def auto_backend(fs: Any, codec: str) -> str:
    """The decoder ``backend="auto"`` picks: decord for local files it supports, else PyAV."""
    if is_local(fs) and codec in DECORD_CODECS and decord_available():
        return "decord"
    return "pyav"


_CONTAINER_MAGIC = (
    (4, (b"ftyp", b"moov", b"mdat", b"free", b"wide", b"skip")),  # ISO BMFF: mp4, mov, 3gp
    (0, (b"\x1a\x45\xdf\xa3",)),  # Matroska / WebM (EBML)
    (0, (b"RIFF",)),  # AVI
    (0, (b"FLV", b"OggS", b"\x00\x00\x01\xba", b"\x30\x26\xb2\x75")),  # FLV, Ogg, MPEG-PS, ASF
)


def looks_like_container(head: bytes) -> bool:
    """True when the first bytes carry a known media-container signature."""
    for offset, sigs in _CONTAINER_MAGIC:
        if any(head[offset : offset + len(s)] == s for s in sigs):
            return True
    return len(head) > 188 and head[0] == 0x47 and head[188] == 0x47  # MPEG-TS sync bytes


def check_file(fs: Any, path: str, uri: str, stage: str = STAGE) -> int:
    """Size in bytes (one ``info`` call); ``NOT_FOUND`` / ``ZERO_BYTE`` ``SampleError``."""
    try:
        meta = fs.info(path)
    except FileNotFoundError as e:
        raise SampleError(ErrorKind.NOT_FOUND, f"no such file: {uri}", stage=stage) from e
    if meta.get("type") == "directory":
        raise SampleError(ErrorKind.NOT_FOUND, f"a directory, not a file: {uri}", stage=stage)
    if meta.get("size") is None:  # a server that does not say (HTTP without Content-Length)
        return 0
    size = int(meta["size"])
    if size == 0:
        raise SampleError(ErrorKind.ZERO_BYTE, f"file is empty (0 bytes): {uri}", stage=stage)
    return size


@contextlib.contextmanager
def open_container(fs: Any, path: str, uri: str, stage: str = STAGE) -> Iterator[Any]:
    """An open PyAV input container; open failures become ``SampleError``s.

    A file that starts like a known container but cannot be opened is ``TRUNCATED`` (e.g. an
    mp4 cut before its ``moov`` index); anything else PyAV cannot open is ``NOT_A_VIDEO``.
    """
    import av

    with contextlib.ExitStack() as stack:
        f = stack.enter_context(fs.open(path, "rb"))
        head = f.read(512)
        if is_local(fs):
            source: Any = path
        elif _random_access(f):
            source = f
        else:  # e.g. an HTTP server that gives no size or ignores Range requests
            source = _spool(fs, path, stack)
        try:
            container = av.open(source, mode="r")
        except FileNotFoundError as e:
            raise SampleError(ErrorKind.NOT_FOUND, f"no such file: {uri}", stage=stage) from e
        except av.error.FFmpegError as e:
            kind = ErrorKind.TRUNCATED if looks_like_container(head) else ErrorKind.NOT_A_VIDEO
            what = (
                "truncated or corrupt container"
                if kind == ErrorKind.TRUNCATED
                else "not a media container"
            )
            raise SampleError(kind, f"{what}: {uri} ({e})", stage=stage) from e
        stack.callback(container.close)
        yield container


def _random_access(f: Any) -> bool:
    """Whether the remote file reads at any offset (one ranged read of its last byte); leaves
    it at offset 0 when it does."""
    try:
        size = int(getattr(f, "size", 0) or 0)
        if size > 1:
            f.seek(size - 1)
            f.read(1)
        f.seek(0)
        return True
    except (ValueError, OSError, NotImplementedError):
        return False


def _spool(fs: Any, path: str, stack: contextlib.ExitStack) -> str:
    """Copy the file to a local temp file by streaming it once; the path of the copy (removed
    when ``stack`` closes). For servers that only stream: decoders need to seek."""
    import os
    import shutil
    import tempfile

    fd, tmp = tempfile.mkstemp(prefix="sama-spool-", suffix=posixpath.splitext(path)[1])
    stack.callback(lambda: os.path.exists(tmp) and os.unlink(tmp))
    with os.fdopen(fd, "wb") as out, fs.open(path, "rb", block_size=0) as src:
        shutil.copyfileobj(src, out, 4 * 2**20)
    return tmp


def video_stream(container: Any, uri: str, stage: str = STAGE) -> Any:
    """The first video stream, with a decoder; threaded decoding on."""
    if not container.streams.video:
        raise SampleError(ErrorKind.NOT_A_VIDEO, f"no video stream in {uri}", stage=stage)
    stream = container.streams.video[0]
    if stream.codec_context is None:
        raise SampleError(
            ErrorKind.UNSUPPORTED_CODEC, f"no decoder for the video codec of {uri}", stage=stage
        )
    stream.thread_type = "AUTO"
    return stream


def codec_name(stream: Any) -> str:
    """Canonical codec name (``av1`` rather than the decoder's ``libdav1d``)."""
    codec = stream.codec_context.codec
    return str(getattr(codec, "canonical_name", None) or codec.name)


def stream_fps(stream: Any) -> Fraction | None:
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    return Fraction(rate) if rate else None


def _first_frame(container: Any, stream: Any, uri: str) -> tuple[Any, str]:
    """The first decodable frame, skipping corrupt packets (``sama.video.salvage``), and a note
    when some were skipped."""
    from sama.video.salvage import SalvageDecoder

    decoder = SalvageDecoder(container, stream, uri, STAGE)
    for _, frame in decoder:
        note = (
            f"{decoder.damage[0].lost} corrupt packets before the first frame"
            if decoder.damage
            else ""
        )
        return frame, note
    raise SampleError(ErrorKind.DECODE_ERROR, f"no decodable frame in {uri}", stage=STAGE)


def _count_packets(fs: Any, path: str, uri: str) -> int:
    """Frame count by demuxing (no decoding), for containers that do not store it (mkv, webm)."""
    with open_container(fs, path, uri) as container:
        stream = video_stream(container, uri)
        return sum(1 for p in container.demux(stream) if p.size > 0)


def tail_tolerance_s(fps: float) -> float:
    """How much earlier than the index promises the last frame may end: max(0.5 s, 10 frames).

    Phones write a track duration a little past the last frame (a long last sample, audio
    running on): a valid phone video promising 0.07 s more was flagged truncated by a 2-frame
    tolerance. Real truncation (a download cut short) loses far more.
    """
    return max(TAIL_TOLERANCE_S, TAIL_TOLERANCE_FRAMES / fps) if fps > 0 else TAIL_TOLERANCE_S


def _check_tail(container: Any, stream: Any, fps: Fraction | None, uri: str) -> tuple[str, float]:
    """Seek to the last keyframe and decode to the end: catches files cut after their index.

    A ``faststart`` mp4 keeps its index at the front, so a download cut short still opens and
    decodes its first frames; only the missing tail shows it. Costs one GOP of decoding. Returns
    ``(note, last_time_s)``: a ``truncated`` note ("" when the end is there) and the time of the
    last frame decoded there (-1 when none).
    """
    import av

    if not stream.duration or not stream.time_base or not fps:
        return "", -1.0
    start = stream.start_time or 0
    promised = float(stream.duration * stream.time_base)
    last_time = None
    error = ""
    try:
        container.seek(start + stream.duration, stream=stream, backward=True, any_frame=False)
        for frame in container.decode(stream):
            if frame.pts is not None:
                last_time = float((frame.pts - start) * stream.time_base)
    except av.error.FFmpegError as e:
        error = f" ({e})"
    if last_time is not None and last_time >= promised - tail_tolerance_s(float(fps)) - 1e-6:
        return "", last_time
    got = "the end does not decode" if last_time is None else f"frames up to {last_time:.3f}s"
    note = f"{got}, the index promises {promised:.3f}s{error}"
    return note, -1.0 if last_time is None else last_time


def probe_video(
    uri: str, fs: Any = None, *, check_tail: bool = True, salvage: bool = False
) -> VideoInfo:
    """Probe ``uri`` (any fsspec URI or local path) and check that it decodes.

    Decodes the first frame (codec support, rotation) and, with ``check_tail``, the last GOP
    (truncation). Raises ``SampleError`` with the kind that explains the failure. With
    ``salvage``, a file that is damaged but still decodes (a cut-off tail) is returned with a
    ``salvage`` note instead of a ``truncated`` error; ``num_frames`` then counts the frames up
    to the last one that decodes there. Corrupt packets before the first frame are skipped
    either way (and noted).
    """
    fs, path = resolve(uri, fs)
    size = check_file(fs, path, uri)
    with open_container(fs, path, uri) as container:
        stream = video_stream(container, uri)
        codec = codec_name(stream)
        fps = stream_fps(stream)
        first, head_note = _first_frame(container, stream, uri)
        rotation = int(round(getattr(first, "rotation", 0) or 0)) % 360
        num_frames = int(stream.frames or 0)
        if stream.duration and stream.time_base:
            duration_s = float(stream.duration * stream.time_base)
        elif container.duration:
            duration_s = container.duration / 1_000_000  # AV_TIME_BASE
        else:
            duration_s = 0.0
        tail_note, last_time = (
            _check_tail(container, stream, fps, uri) if check_tail else ("", -1.0)
        )
    if tail_note and not salvage:
        raise SampleError(ErrorKind.TRUNCATED, f"{uri} ends early: {tail_note}", stage=STAGE)
    if num_frames <= 0:
        num_frames = _count_packets(fs, path, uri)
    if tail_note and last_time >= 0 and fps:
        num_frames = min(num_frames, int(round(last_time * float(fps))) + 1)
        duration_s = num_frames / float(fps)
    if duration_s <= 0 and fps:
        duration_s = float(num_frames / fps)
    w, h = first.width, first.height
    if rotation in (90, 270):
        w, h = h, w
    return VideoInfo(
        uri=str(uri),
        width=int(w),
        height=int(h),
        fps=float(fps) if fps else 0.0,
        num_frames=num_frames,
        duration_s=duration_s,
        codec=codec,
        rotation=rotation,
        size_bytes=size,
        backend="pyav" if tail_note or head_note else auto_backend(fs, codec),
        salvage="; ".join(n for n in (head_note, tail_note and f"truncated: {tail_note}") if n),
    )
