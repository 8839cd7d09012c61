"""Decode what a damaged file still holds: skip corrupt packets and go on, as FFmpeg does.

PyAV's ``container.decode()`` stops at the first packet the decoder rejects, so a file with a
few kB of garbage in the middle gave no clip at all (opencv-doc's ``box.mp4`` with 20 kB
overwritten at 50%: an error after 224 of 456 frames, while 451 decode packet by packet). Here
each packet is decoded on its own; a rejected one is counted as lost and decoding goes on.

Frames that follow a loss are decoded from references that are gone: the decoder conceals the
hole, and the error spreads until the next keyframe (measured on that file: frames 225-249
differ from the intact decode by 5-11 on 0-255, frame 250, a keyframe, by 0). So after a loss,
frames are dropped up to the next keyframe (at most ``max_drop``; then concealed frames are
accepted rather than losing the rest of the file).

Indices: frame ``i`` is the i-th frame the decoder gave, counting dropped frames and each lost
packet as one frame, so a damaged stretch is a *gap* in the indices and every index after it
stays close to the frame's true position. A gap means damage: shot detectors report it as a
``damage`` boundary (``sama.video.boundaries``) and no clip spans it. An undamaged file gives
``0, 1, 2, ...``, the same indices as plain decoding.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from sama.errors import ErrorKind, SampleError

MAX_DROP = 300  # frames dropped after a loss while waiting for a keyframe (~10 s at 30 fps)
MAX_LOST_IN_A_ROW = 64  # packets rejected in a row: the rest of the file is not video any more


@dataclass(frozen=True)
class Damage:
    """Frames ``[start, end)`` are missing: ``lost`` packets rejected, ``dropped`` frames
    decoded from lost references and thrown away; ``error`` is the decoder's last message."""

    start: int
    end: int
    lost: int
    dropped: int
    error: str


@dataclass
class SalvageDecoder:
    """``for index, frame in SalvageDecoder(container, stream, uri)``: PyAV video frames of
    ``stream`` with their indices (see the module docstring); ``damage`` lists what was lost.

    Raises ``SampleError`` (``unsupported_codec`` or ``decode_error``) only when not a single
    frame decodes; damage after that is recorded, never raised.
    """

    container: Any
    stream: Any
    uri: str
    stage: str = "decode"
    max_drop: int = MAX_DROP
    require_frames: bool = True  # no frame at all is a SampleError (off after a seek)
    damage: list[Damage] = field(default_factory=list)
    frames: int = 0  # frames yielded
    truncated: bool = False  # the demuxer gave up before the end of the file

    def __iter__(self) -> Iterator[tuple[int, Any]]:
        import av

        index, lost, dropped, error, waiting = 0, 0, 0, "", False
        in_a_row = 0
        for packet in self._packets():
            try:
                decoded = packet.decode()
            except av.error.FFmpegError as e:
                if self._unsupported(e) and not self.frames:
                    raise self._fail(e) from e
                lost, index, error, waiting = lost + 1, index + 1, str(e), True
                in_a_row += 1
                if in_a_row >= MAX_LOST_IN_A_ROW:
                    self.truncated = True
                    break
                continue
            in_a_row = 0
            for frame in decoded:
                if waiting and not frame.key_frame and dropped < self.max_drop:
                    dropped, index = dropped + 1, index + 1
                    continue
                if waiting:
                    self.damage.append(Damage(index - lost - dropped, index, lost, dropped, error))
                    lost, dropped, waiting = 0, 0, False
                yield index, frame
                index += 1
                self.frames += 1
        if waiting:
            self.damage.append(Damage(index - lost - dropped, index, lost, dropped, error))
        if not self.frames and self.require_frames:
            kind = ErrorKind.DECODE_ERROR
            msg = f"{self.uri}: the {self.stream.codec_context.name} stream decoded 0 frames"
            raise SampleError(kind, msg + (f" ({error})" if error else ""), stage=self.stage)

    def _packets(self) -> Iterator[Any]:
        """Demuxed packets of the stream; a demuxer error ends the file (``truncated``)."""
        import av

        packets = self.container.demux(self.stream)
        while True:
            try:
                yield next(packets)
            except StopIteration:
                return
            except av.error.FFmpegError:
                self.truncated = True
                return

    def note(self) -> str:
        """A one-line account of the damage ("" when none), for a ``salvaged`` error row."""
        if not self.damage and not self.truncated:
            return ""
        parts = [f"frames {d.start}-{d.end - 1} lost ({d.lost} corrupt packets, {d.dropped} "
                 f"frames dropped until a keyframe)" for d in self.damage]  # fmt: skip
        if self.truncated:
            parts.append("the container ends early")
        return f"{self.uri}: salvaged {self.frames} frames; " + "; ".join(parts)

    @staticmethod
    def _unsupported(e: Exception) -> bool:
        import av

        return isinstance(
            e,
            (
                av.error.DecoderNotFoundError,
                av.error.PatchWelcomeError,
                av.error.NotImplementedError,
            ),
        )

    def _fail(self, e: Exception) -> SampleError:
        msg = f"{self.uri}: {self.stream.codec_context.name} cannot decode this stream: {e}"
        return SampleError(ErrorKind.UNSUPPORTED_CODEC, msg, stage=self.stage)
