"""The three tiers of failure (CONVENTIONS.md rule 5).

- ``ConfigError``: bad configuration; raised at start-up, before any work, with a message that
  says how to fix it.
- ``SampleError``: one bad input (corrupt file, unsupported codec, too short, no usable shot...).
  Stages catch it and turn it into a row of the ``errors/v1`` table; the run goes on.
- ``FatalError``: anything that should stop the task (it is retried; a re-run skips work that
  is already complete).
"""

from __future__ import annotations

from enum import StrEnum


class ErrorKind(StrEnum):
    """Kinds of per-sample failure; the ``kind`` column of ``errors/v1``."""

    NOT_FOUND = "not_found"
    ZERO_BYTE = "zero_byte"
    NOT_A_VIDEO = "not_a_video"
    NOT_AN_IMAGE = "not_an_image"
    UNSUPPORTED_CODEC = "unsupported_codec"
    TRUNCATED = "truncated"
    DECODE_ERROR = "decode_error"
    TOO_SHORT = "too_short"
    NO_USABLE_SHOT = "no_usable_shot"
    MISMATCH = "mismatch"
    BAD_MANIFEST_ROW = "bad_manifest_row"
    ENCODE_ERROR = "encode_error"
    JUDGE_UNPARSEABLE = "judge_unparseable"
    FILTERED = "filtered"  # the VLM judge's score filter (pairs)
    # Clip filters (sama.filters): one kind per filter, so the errors table says which.
    FILTERED_SHORT = "filtered_short"
    FILTERED_DARK = "filtered_dark"
    FILTERED_BRIGHT = "filtered_bright"
    FILTERED_STATIC = "filtered_static"
    FILTERED_MOTION = "filtered_motion"
    NOT_CLEAN = "not_clean"  # the clean-clip guard found a boundary inside (sama.video.clean_clip)
    SALVAGED = "salvaged"  # a note, not a failure: a damaged input whose good frames were used
    TIMEOUT = "timeout"  # over budget.max_seconds_per_input (a stalled read or decoder)
    TOO_LARGE = "too_large"  # over budget.max_pixels / max_frames / max_memory_mb
    NOT_ALLOWED = "not_allowed"  # a manifest entry outside input.allowed_roots / schemes
    INTERNAL_ERROR = "internal_error"  # an unexpected exception on this input, after retries


class SamaError(Exception):
    """Base class of every error this package raises on purpose."""


class ConfigError(SamaError, ValueError):
    """Invalid configuration. The message names the field and says how to fix it."""


class SampleError(SamaError):
    """A single input cannot be processed; it becomes an error row, the run continues."""

    def __init__(self, kind: ErrorKind | str, message: str, *, stage: str = "") -> None:
        super().__init__(message)
        self.kind = ErrorKind(kind)
        self.message = message
        self.stage = stage

    def __str__(self) -> str:
        where = f"[{self.stage}] " if self.stage else ""
        return f"{where}{self.kind.value}: {self.message}"


class FatalError(SamaError, RuntimeError):
    """Stops the task (not a property of one sample): a broken environment, a full disk..."""


class MissingExtraError(SamaError, ImportError):
    """A heavy optional dependency is not installed; the message names the extra."""


def require(module: str, extra: str):
    """Import ``module`` or raise an error that names the ``pip install 'sama[extra]'`` fix."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as e:  # pragma: no cover - exercised only without the extra
        raise MissingExtraError(
            f"{module!r} is required here; install it with: pip install 'sama[{extra}]'"
        ) from e
