"""Shared session fixtures: tiny generated media with known truth (sama.media).

Keep this file small: fixtures that one test module needs belong in that module.
"""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def sample_set(tmp_path_factory) -> dict:
    """``sama.media.make_sample_set`` output: videos (with true cuts), images, bad files, manifest."""
    from sama.media import make_sample_set

    return make_sample_set(tmp_path_factory.mktemp("samples"))


@pytest.fixture(scope="session")
def sample_dir(sample_set) -> Path:
    """Root directory of the sample set (``manifest.jsonl``, ``videos/``, ``images/``, ``bad/``)."""
    return Path(sample_set["root"])


@pytest.fixture(scope="session")
def shot_video(tmp_path_factory) -> dict:
    """An H.264 64x64 24 fps video of three shots (30, 36, 21 frames), keyframe every 12 frames.

    Keys: ``path, size, fps, codec, shot_lengths, num_frames, cuts`` (cuts = [30, 66]).
    """
    from sama.media import write_shot_video

    lengths = [30, 36, 21]
    path = tmp_path_factory.mktemp("shot_video") / "shots.mp4"
    cuts = write_shot_video(path, lengths, size=(64, 64), fps=24, codec="libx264", seed=3, gop=12)
    return {
        "path": str(path),
        "size": [64, 64],
        "fps": 24,
        "codec": "libx264",
        "shot_lengths": lengths,
        "num_frames": sum(lengths),
        "cuts": cuts,
    }
