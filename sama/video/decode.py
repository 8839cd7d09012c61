"""Stream frames out of a video without ever holding the whole video in memory.

Two backends (SAMA.md section 1 clips are the first F contiguous frames of a shot, so reads are
mostly one contiguous run):

- **decord**: fast random access, local files only, no AV1.
- **PyAV**: everything else: fsspec file objects (``memory://``, remote URIs) and AV1 (the
  wheel bundles libdav1d; decord and OpenCV wheels cannot decode AV1).

``backend="auto"`` uses decord for local files whose codec it supports and PyAV otherwise, and
falls back to PyAV (from the frame where decord stopped) if decord fails. Frame ``i`` is the
i-th decoded frame in presentation order; frames are upright (rotation applied) RGB uint8.

Legend: ``frame_HWC`` = one RGB frame, ``frames_THWC`` = a stack of them.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from fractions import Fraction
from typing import Any, Literal

import numpy as np

from sama.errors import ErrorKind, SampleError
from sama.video.probe import (
    DECORD_CODECS,
    VideoInfo,
    check_file,
    is_local,
    open_container,
    probe_video,
    resolve,
    stream_fps,
    video_stream,
)
from sama.video.salvage import SalvageDecoder

Backend = Literal["auto", "decord", "pyav"]
STAGE = "decode"
DECORD_CHUNK = 16  # frames per decord get_batch: bounded memory, few seeks
# Below this start frame PyAV decodes from the beginning instead of seeking: the index then is a
# plain decode count. Beyond it, the seek target's index comes from its timestamp (exact for
# constant frame rate) and counting goes on from there.
SEEK_MIN_FRAMES = 48


class _DecordFailed(Exception):
    """decord could not open or decode; ``auto`` falls back to PyAV."""


def upright_rgb(frame: Any, reformatter: Any, size: tuple[int, int] | None = None) -> np.ndarray:
    """PyAV frame -> upright RGB uint8 ``frame_HWC``, downscaled during conversion if ``size``.

    The rotation comes from the frame's display matrix; ``size=(w, h)`` is the upright (display)
    size. Pass one ``av.video.reformatter.VideoReformatter`` per stream: it keeps the swscale
    context, while ``frame.to_ndarray`` builds a new one per frame, which measured ~30x slower
    on small frames. Every decoder of RGB frames (this module, pipelines ``CutClips``) uses it,
    so all of them agree on orientation.
    """
    k = (int(round(getattr(frame, "rotation", 0) or 0)) // 90) % 4
    if size is None:
        rgb = reformatter.reformat(frame, format="rgb24").to_ndarray()
    else:
        w, h = (size[1], size[0]) if k % 2 else size  # size is the display (upright) size
        out = reformatter.reformat(frame, width=w, height=h, format="rgb24", interpolation="AREA")
        rgb = out.to_ndarray()
    # The display matrix angle is counter-clockwise; np.rot90 turns counter-clockwise too.
    return np.ascontiguousarray(np.rot90(rgb, k)) if k else rgb


def _pts_index(frame: Any, t0: int, time_base: Fraction, fps: Fraction) -> int | None:
    if frame is None or frame.pts is None:
        return None
    return round((frame.pts - t0) * time_base * fps)


def _indexed(
    container: Any, stream: Any, start: int, uri: str, seek: bool = True
) -> Iterator[tuple[int, Any]]:
    """(index, PyAV frame) pairs, beginning at or before ``start``; seeks when it pays.

    Decoding skips corrupt packets (``sama.video.salvage``): indices have a gap where frames
    were lost. After a seek the index comes from the first frame's timestamp, which matches the
    count only where nothing before it was lost: pass ``seek=False`` for a file known to be
    damaged, so its indices are the ones a decode from the start (the shot detector) gives.
    """
    fps = stream_fps(stream)
    t0 = stream.start_time or 0
    if seek and start >= SEEK_MIN_FRAMES and fps and stream.time_base:
        target = t0 + int(Fraction(start) / fps / stream.time_base)
        container.seek(target, stream=stream, backward=True)
        frames = iter(SalvageDecoder(container, stream, uri, STAGE, require_frames=False))
        j0, first = next(frames, (0, None))
        idx = _pts_index(first, t0, stream.time_base, fps)
        if idx is not None and idx <= start:
            yield idx, first
            yield from ((idx + j - j0, f) for j, f in frames)
            return
        container.seek(t0, stream=stream, backward=True)  # overshot: count from the start
    yield from SalvageDecoder(container, stream, uri, STAGE)


def _pyav_select(
    fs: Any,
    path: str,
    uri: str,
    start: int,
    stop: int | None,
    keep: set[int] | None,
    size: Any,
    seek: bool = True,
) -> Iterator[tuple[int, np.ndarray] | None]:
    """(index, frame) pairs; first yields ``None`` once the container is open (see ``_pyav_open``)."""
    from av.video.reformatter import VideoReformatter

    reformatter = VideoReformatter()
    with open_container(fs, path, uri, stage=STAGE) as container:
        stream = video_stream(container, uri, stage=STAGE)
        yield None
        for idx, frame in _indexed(container, stream, start, uri, seek):
            if stop is not None and idx >= stop:
                return
            if idx >= start and (keep is None or idx in keep):
                yield idx, upright_rgb(frame, reformatter, size)


def _pyav_open(*args: Any) -> Iterator[tuple[int, np.ndarray]]:
    """Open the container now (a bad file raises here, not at the first frame), stream later."""
    gen = _pyav_select(*args)
    next(gen)
    return gen  # type: ignore[return-value]


def _decord_select(
    path: str, start: int, stop: int | None, keep: set[int] | None, size: Any
) -> Iterator[tuple[int, np.ndarray]]:
    import decord

    kwargs = {} if size is None else {"width": int(size[0]), "height": int(size[1])}
    try:
        vr = decord.VideoReader(path, ctx=decord.cpu(0), **kwargs)
        n = len(vr)
    except (decord.DECORDError, RuntimeError) as e:
        raise _DecordFailed(str(e)) from e
    stop = n if stop is None else min(stop, n)
    wanted = [i for i in range(start, stop) if keep is None or i in keep]
    for c in range(0, len(wanted), DECORD_CHUNK):
        chunk = wanted[c : c + DECORD_CHUNK]
        try:
            batch_THWC = vr.get_batch(chunk).asnumpy()
        except (decord.DECORDError, RuntimeError) as e:
            raise _DecordFailed(str(e)) from e
        if batch_THWC.ndim != 4 or batch_THWC.shape[-1] != 3:
            raise _DecordFailed(f"decord returned frames of shape {batch_THWC.shape}")
        if size is not None and batch_THWC.shape[1:3] != (size[1], size[0]):
            raise _DecordFailed(f"decord returned {batch_THWC.shape[1:3]}, asked {size}")
        yield from zip(chunk, batch_THWC, strict=True)


def _choose_backend(backend: str, fs: Any, uri: str, info: VideoInfo | None) -> str:
    if backend == "pyav":
        return "pyav"
    if backend not in ("auto", "decord"):
        raise ValueError(f"backend must be 'auto', 'decord' or 'pyav'; got {backend!r}")
    info = info or probe_video(uri, fs=fs, check_tail=False)
    if backend == "decord" and (not is_local(fs) or info.codec not in DECORD_CODECS):
        where = "a local file" if is_local(fs) else "not a local file"
        raise SampleError(
            ErrorKind.UNSUPPORTED_CODEC,
            f"decord cannot decode {uri} (codec {info.codec}, {where}); use backend='pyav'",
            stage=STAGE,
        )
    return info.backend if backend == "auto" else "decord"


def _select(
    uri: str,
    fs: Any,
    start: int,
    stop: int | None,
    keep: set[int] | None,
    size: Any,
    backend: Backend,
    info: VideoInfo | None,
    seek: bool = True,
) -> Iterator[tuple[int, np.ndarray]]:
    """Validate eagerly (bad files raise here), then return the lazy (index, frame) stream.

    A file the probe found damaged (``info.salvage``) is decoded by PyAV from the start, so its
    indices match the shot detector's (see ``_indexed``); decord cannot skip corrupt packets.
    """
    fs, path = resolve(uri, fs)
    check_file(fs, path, uri, stage=STAGE)
    if info is not None and info.salvage:
        backend, seek = "pyav", False
    chosen = _choose_backend(backend, fs, uri, info)
    if chosen == "pyav":
        return _pyav_open(fs, path, uri, start, stop, keep, size, seek)

    def run() -> Iterator[tuple[int, np.ndarray]]:
        resume = start
        try:
            for idx, frame_HWC in _decord_select(path, start, stop, keep, size):
                resume = idx + 1
                yield idx, frame_HWC
            return
        except _DecordFailed as e:
            if backend == "decord":
                raise SampleError(ErrorKind.DECODE_ERROR, f"decord: {uri}: {e}", stage=STAGE) from e
        yield from _pyav_open(fs, path, uri, resume, stop, keep, size, seek)  # auto: fall back

    return run()


def iter_indexed_frames(
    uri: str,
    start: int = 0,
    count: int | None = None,
    *,
    size: tuple[int, int] | None = None,
    backend: Backend = "auto",
    fs: Any = None,
    info: VideoInfo | None = None,
    seek: bool = True,
) -> Iterator[tuple[int, np.ndarray]]:
    """``(index, frame_HWC)`` for the frames with ``start <= index < start + count`` (all to
    the end if ``count`` is None), RGB uint8.

    A damaged file skips its corrupt packets and goes on (``sama.video.salvage``): the indices
    then have a gap where frames were lost, so a clip taken from consecutive indices never spans
    the damage. ``seek=False`` decodes from the start (see ``_indexed``). Otherwise as
    ``iter_frames``.
    """
    if start < 0 or (count is not None and count < 0):
        raise ValueError(f"start and count must be >= 0; got start={start}, count={count}")
    stop = None if count is None else start + count
    return _select(uri, fs, int(start), stop, None, size, backend, info, seek)


def iter_frames(
    uri: str,
    start: int = 0,
    count: int | None = None,
    *,
    size: tuple[int, int] | None = None,
    backend: Backend = "auto",
    fs: Any = None,
    info: VideoInfo | None = None,
) -> Iterator[np.ndarray]:
    """Frames ``start, start+1, ...`` (at most ``count``; all to the end if None) as RGB uint8.

    Streams: one frame (decord: a chunk of 16) in memory at a time. Stops early at the end of
    the video; ``read_frames`` is the strict variant. ``size=(w, h)`` downscales during decoding
    (cheap input for shot detection). ``info`` (from ``probe_video``) saves a probe. Bad files
    raise ``SampleError`` from this call, before the first frame is asked for. Frames lost to
    damage are skipped; ``iter_indexed_frames`` says where.
    """
    pairs = iter_indexed_frames(uri, start, count, size=size, backend=backend, fs=fs, info=info)
    return (frame_HWC for _, frame_HWC in pairs)


def read_frames(
    uri: str,
    indices: Iterable[int],
    *,
    size: tuple[int, int] | None = None,
    backend: Backend = "auto",
    fs: Any = None,
    info: VideoInfo | None = None,
) -> np.ndarray:
    """``frames_THWC`` at ``indices`` (any order, repeats allowed), decoded in one pass.

    Raises ``SampleError(TOO_SHORT)`` when an index is past the end of the video.
    """
    order = [int(i) for i in indices]
    if not order:
        raise ValueError("indices is empty")
    if min(order) < 0:
        raise ValueError(f"indices must be >= 0; got {min(order)}")
    keep = set(order)
    pairs = _select(uri, fs, min(order), max(order) + 1, keep, size, backend, info)
    got = dict(pairs)
    missing = sorted(keep - got.keys())
    if missing:
        raise SampleError(
            ErrorKind.TOO_SHORT,
            f"{uri} has no frame {missing[0]} (decoded up to {max(got, default=-1)})",
            stage=STAGE,
        )
    return np.stack([got[i] for i in order])
