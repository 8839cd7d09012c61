"""The 4k+1 frame rule (SAMA.md section 1).

The Wan2.1 VAE is causal in time with a 4x temporal stride: the first frame gets its own latent
frame and every further group of 4 frames one more. A clip must therefore have F = 4k+1 frames
and yields (F-1)/4+1 latent frames. The default clip is the first 81 contiguous frames of a shot
(stride 1, no fps resampling); ``clip_starts`` also offers non-overlapping multi-clip sampling.
"""

from __future__ import annotations

from typing import Literal

DEFAULT_NUM_FRAMES = 81  # SAMA.md section 1: default F = 81 -> 21 latent frames
TEMPORAL_STRIDE = 4  # Wan2.1 VAE: 4x in time

ClipPolicy = Literal["first", "multi"]


def is_valid_num_frames(n: int) -> bool:
    """True when ``n`` is a positive 4k+1 frame count (1, 5, 9, ..., 81, ...)."""
    return int(n) >= 1 and (int(n) - 1) % TEMPORAL_STRIDE == 0


def floor_4k1(n: int) -> int:
    """The largest 4k+1 that is <= ``n``; 0 when ``n`` < 1."""
    n = int(n)
    if n < 1:
        return 0
    return (n - 1) // TEMPORAL_STRIDE * TEMPORAL_STRIDE + 1


def latent_num_frames(n: int) -> int:
    """Latent frames the causal VAE makes from ``n`` = 4k+1 pixel frames: (n-1)//4 + 1."""
    if not is_valid_num_frames(n):
        raise ValueError(f"num_frames must be 4k+1 (1, 5, 9, ..., 81); got {n}")
    return (int(n) - 1) // TEMPORAL_STRIDE + 1


def clip_starts(shot_len: int, num_frames: int, policy: ClipPolicy = "first") -> list[int]:
    """Start frames (relative to the shot) of the clips of ``num_frames`` frames cut from a shot.

    ``"first"``: the first contiguous ``num_frames`` frames, as in the paper; ``"multi"``: as many
    non-overlapping clips as fit, back to back from frame 0. An empty list when the shot is
    shorter than one clip.
    """
    if not is_valid_num_frames(num_frames):
        raise ValueError(f"num_frames must be 4k+1 (1, 5, 9, ..., 81); got {num_frames}")
    if policy not in ("first", "multi"):
        raise ValueError(f"clip policy must be 'first' or 'multi'; got {policy!r}")
    if shot_len < num_frames:
        return []
    if policy == "first":
        return [0]
    return list(range(0, shot_len - num_frames + 1, num_frames))
