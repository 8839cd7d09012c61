"""Video core: the 4k+1 frame rule, aspect buckets, probing and decoding (SAMA.md section 1).

This package ``__init__`` stays light: ``frames`` and ``buckets`` are pure Python/numpy, while
``probe`` and ``decode`` import PyAV / decord / OpenCV only inside their functions.
"""

from sama.video.buckets import BUCKETS_480P, buckets_for, nearest_bucket
from sama.video.frames import clip_starts, floor_4k1, is_valid_num_frames, latent_num_frames

__all__ = [
    "BUCKETS_480P",
    "buckets_for",
    "clip_starts",
    "floor_4k1",
    "is_valid_num_frames",
    "latent_num_frames",
    "nearest_bucket",
]
