"""Field paths into manifest rows, and URI helpers for the paths they hold.

A column spec is a small path: ``a.b`` (nested key), ``a[0]`` / ``a[-1]`` (list item),
``a[from=human]`` (first list item whose ``from`` is ``human``), and ``x|y`` (the first
non-empty of several alternatives). A literal top-level key always wins, so CSV headers with
dots in them work. Relative paths in a row are resolved against a base folder with ``join_uri``;
absolute paths, URIs and chained ``tar://member::shard`` URIs are kept as they are.
"""

from __future__ import annotations

import posixpath
import re
from pathlib import PurePosixPath
from typing import Any, Literal

MediaType = Literal["image", "video"]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")
VIDEO_EXTENSIONS = (".mp4", ".mkv", ".webm", ".mov", ".avi", ".m4v", ".mpg", ".mpeg", ".ts")

_TOKEN = re.compile(r"\[([^\]]*)\]|([^.\[\]]+)")


def _empty(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _step(value: Any, token: str, bracket: bool) -> Any:
    if not bracket:
        return value.get(token) if isinstance(value, dict) else None
    if not isinstance(value, list | tuple):
        return None
    if "=" in token:
        key, want = token.split("=", 1)
        return next((v for v in value if isinstance(v, dict) and str(v.get(key)) == want), None)
    try:
        return value[int(token)]
    except (ValueError, IndexError):
        return None


def _lookup(record: dict[str, Any], path: str) -> Any:
    if path in record:
        return record[path]
    value: Any = record
    for bracketed, name in _TOKEN.findall(path):
        value = _step(value, bracketed or name, bool(bracketed))
        if value is None:
            return None
    return value


def get_field(record: dict[str, Any], spec: str) -> Any:
    """The value at field path ``spec`` (first non-empty alternative of ``a|b``), or None."""
    for alt in (a.strip() for a in spec.split("|")):
        value = _lookup(record, alt) if alt else None
        if not _empty(value):
            return value
    return None


def has_field(record: dict[str, Any], spec: str) -> bool:
    """True when some alternative of ``spec`` exists in ``record`` (even if empty)."""
    return any(_lookup(record, a.strip()) is not None for a in spec.split("|") if a.strip())


def top_keys(spec: str) -> set[str]:
    """Top-level keys a spec reads whole (nested paths leave their container in metadata)."""
    return {alt.strip() for alt in spec.split("|") if alt.strip()}


def folder_of(uri: str) -> str:
    """The folder holding ``uri`` (URI or local path), in the same spelling."""
    if "://" in uri:
        proto, rest = uri.split("://", 1)
        return f"{proto}://{posixpath.dirname(rest)}"
    return posixpath.dirname(posixpath.abspath(uri))


def join_uri(base: str, rel: str) -> str:
    """``rel`` resolved against folder ``base``; absolute URIs / paths come back as they are."""
    if "://" in rel or "::" in rel or rel.startswith("/"):
        return rel
    if "://" in base:
        proto, rest = base.split("://", 1)
        lead = "/" if rest.startswith("/") else ""
        return f"{proto}://{lead}{posixpath.normpath(posixpath.join(rest, rel)).lstrip('/')}"
    return posixpath.normpath(posixpath.join(base, rel))


def guess_media_type(uri: str) -> MediaType | None:
    """``image`` / ``video`` from the file extension (the member name for ``tar://a::b``)."""
    ext = PurePosixPath(uri.split("::")[0].split("?")[0]).suffix.lower()
    if ext in IMAGE_EXTENSIONS:
        return "image"
    if ext in VIDEO_EXTENSIONS:
        return "video"
    return None
