"""Where a manifest may send the workers: allowed roots and schemes for its entries.

A manifest is data, often someone else's. Without a bound, an entry like ``../../etc/passwd``,
``/home/me/.aws/credentials`` or ``http://169.254.169.254/latest/meta-data/`` (a cloud metadata
address) makes the build's workers read it. ``Confinement`` says what an entry may name:

- ``roots``: URI prefixes (local folders or ``scheme://host/prefix``); default: the folder of the
  manifest itself;
- ``schemes``: default: the manifest's own scheme (``file`` for local paths).

``resolve(entry)`` turns an entry into a full URI (relative entries against ``base``), with
``..`` segments folded, and ``check(uri)`` returns why it is refused (or None): the build makes
that entry an error row of kind ``not_allowed``, naming the config fields to change.
"""

from __future__ import annotations

import os
import posixpath
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit


def split(uri: str) -> tuple[str, str, str]:
    """(scheme, host, normalised path); local paths are ``file`` with no host."""
    if "://" not in uri:
        path = posixpath.normpath(uri)
        return "file", "", "/" + path.lstrip("/") if uri.startswith("/") else path
    parts = urlsplit(uri)
    scheme = parts.scheme.lower()
    if scheme in ("file", "local"):
        return "file", "", posixpath.normpath(parts.path or "/")
    host = parts.netloc.rsplit("@", 1)[-1].lower()
    path = posixpath.normpath(parts.path) if parts.path else "/"
    return scheme, host, "/" if path == "." else path


def _under(path: str, root: str) -> bool:
    root = root.rstrip("/") or "/"
    return root == "/" or path == root or path.startswith(root + "/")


@dataclass(frozen=True)
class Confinement:
    roots: tuple[str, ...]
    schemes: tuple[str, ...]

    @classmethod
    def for_manifest(cls, manifest_uri: str, roots: list[str], schemes: list[str]) -> Confinement:
        """The default is the manifest's folder and scheme; explicit lists replace it."""
        scheme, host, path = split(manifest_uri.rsplit("::", 1)[-1])
        if scheme == "file":
            path = os.path.abspath(path)
        folder = posixpath.dirname(path) or "/"
        default_root = folder if scheme == "file" else f"{scheme}://{host}{folder}"
        return cls(tuple(roots) or (default_root,), tuple(s.lower() for s in schemes) or (scheme,))

    def check(self, uri: str) -> str | None:
        """Why ``uri`` may not be read, or None when it may. A chained URL
        (``tar://member::s3://b/shard.tar``) is judged by its outermost target."""
        scheme, host, path = split(uri.rsplit("::", 1)[-1])
        if scheme != "file":  # judged as the client will ask: `%2e%2e` is `..` to yarl (HTTP)
            path = posixpath.normpath(unquote(path))
        if scheme not in self.schemes:
            return (f"{uri!r} uses scheme {scheme!r}; the manifest may name only "
                    f"{list(self.schemes)} (set input.allowed_schemes to allow more)")  # fmt: skip
        for root in self.roots:
            r_scheme, r_host, r_path = split(root)
            if r_scheme == "file":
                r_path = os.path.abspath(r_path)
            if r_scheme == scheme and r_host == host and _under(path, r_path):
                return None
        return (f"{uri!r} is outside the allowed roots {list(self.roots)} (set "
                "input.allowed_roots to the folders or URI prefixes the manifest may name)")  # fmt: skip


def resolve(base: str, entry: str, base_is_local: bool) -> str:
    """An entry as a full URI: absolute URIs as they are (``..`` folded), relative ones joined
    to ``base`` (the manifest's folder)."""
    if "://" in entry:
        scheme, host, path = split(entry)
        if scheme == "file":
            return path
        parts = urlsplit(entry)
        query = f"?{parts.query}" if parts.query else ""
        netloc = parts.netloc
        return f"{parts.scheme}://{netloc}{path}{query}"
    if entry.startswith("/"):
        joined = posixpath.normpath(entry)
        if base_is_local:
            return joined
        scheme, host, _ = split(base)
        return f"{scheme}://{host}{joined}"
    if base_is_local:
        return posixpath.normpath(posixpath.join(base, entry))
    scheme, host, path = split(base)
    return f"{scheme}://{host}{posixpath.normpath(posixpath.join(path, entry))}"
