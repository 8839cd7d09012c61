"""Secrets out of everything a build or a run writes: provenance, configs, summaries, cards, logs.

A config reaches many places that outlive the process (every shard footer, ``build_config.yaml``,
``summary.json``, the dataset card that ``sama publish`` uploads). Credentials given to fsspec
(``storage_options``: S3 keys, tokens) and any value under a key that looks like a secret must
never reach them. ``redact(obj)`` returns a copy with:

- every ``storage_options`` mapping replaced by its keys, each value ``"<redacted>"`` (which
  options were set is useful to know; their values are not);
- every value whose key contains ``key``, ``secret``, ``token``, ``password``, ``passwd``,
  ``credential``, ``authorization`` or ``signature`` (any case), or is ``auth`` replaced by ``"<redacted>"``;
- user:password in URLs (``s3://AKIA:xyz@bucket/``, ``https://u:p@host``) and URL query values
  whose name looks like a secret (``?token=...``, ``X-Amz-Signature``) replaced.

Only strings in values are rewritten; the structure stays, so a redacted config still shows
every knob the build used.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

REDACTED = "<redacted>"
SECRET_WORDS = frozenset({"key", "apikey", "secret", "token", "password", "passwd", "credential",
                          "credentials", "auth", "authorization", "signature"})  # fmt: skip
# config fields of this project that have a secret word but hold no secret
NOT_SECRET = frozenset({"global_token", "key_column", "id_key"})
_WORD = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z0-9]+")
_URL_WITH_USER = re.compile(r"^[a-zA-Z][\w+.-]*://[^/@\s]+@")


def is_secret_key(key: Any) -> bool:
    k = str(key)
    if k.lower() in NOT_SECRET:
        return False
    return any(w.lower() in SECRET_WORDS for w in _WORD.findall(k))


def redact(obj: Any, _key: str | None = None) -> Any:
    """A copy of ``obj`` (dicts, lists, scalars) with secrets replaced (see the module doc)."""
    if isinstance(obj, dict):
        out: dict = {}
        for k, v in obj.items():
            if str(k) == "storage_options" and isinstance(v, dict):
                out[k] = dict.fromkeys(v, REDACTED)
            elif is_secret_key(k) and v not in (None, "", {}, []):
                out[k] = REDACTED
            else:
                out[k] = redact(v, str(k))
        return out
    if isinstance(obj, list | tuple):
        return type(obj)(redact(v, _key) for v in obj)
    if isinstance(obj, str):
        return redact_url(obj)
    return obj


def redact_url(text: str) -> str:
    """``text`` with URL credentials and secret-looking query values replaced."""
    if "://" not in text:
        return text
    try:
        parts = urlsplit(text)
    except ValueError:
        return text
    netloc = parts.netloc
    if "@" in netloc:
        netloc = f"{REDACTED}@{netloc.rsplit('@', 1)[1]}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(is_secret_key(k) for k, _ in pairs):
            query = urlencode([(k, REDACTED if is_secret_key(k) else v) for k, v in pairs])
    if netloc == parts.netloc and query == parts.query:
        return text
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
