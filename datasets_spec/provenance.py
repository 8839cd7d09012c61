"""Provenance: what produced a shard, stored as JSON in the Parquet key-value metadata.

Key ``sama.provenance``. The trainer compares the fields in ``COMPATIBILITY_KEYS`` with its own
config and refuses shards that disagree (CONVENTIONS.md rule 3).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pyarrow as pa

from datasets_spec.base import PROVENANCE_KEY, SPEC_KEY, SchemaError

# (path into the provenance dict, human name). A mismatch on any of these means the shards were
# made for a different model or latent space.
COMPATIBILITY_KEYS: tuple[tuple[str, str], ...] = (
    ("spec", "spec version"),
    ("vae.id", "VAE model id"),
    ("vae.config_hash", "VAE config"),
    ("latent_norm.kind", "latent normalisation"),
    ("siglip.id", "SigLIP model id"),
    ("siglip.config_hash", "SigLIP config"),
    ("anchor_policy.tokens_per_anchor", "tokens per anchor"),
)

REQUIRED = ("spec", "sama_version", "vae", "latent_norm", "siglip", "anchor_policy",
            "frame_policy", "resolution_policy", "build_config")


def stable_hash(obj: Any) -> str:
    """sha256 of the canonical JSON of ``obj`` (sorted keys), first 16 hex digits."""
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def check_provenance(prov: dict) -> None:
    missing = [k for k in REQUIRED if k not in prov]
    if missing:
        raise SchemaError(f"provenance is missing {missing}")


def with_provenance(schema: pa.Schema, prov: dict) -> pa.Schema:
    """``schema`` with the provenance JSON (and the spec id) in its metadata."""
    check_provenance(prov)
    meta = dict(schema.metadata or {})
    meta[PROVENANCE_KEY] = json.dumps(prov, sort_keys=True).encode()
    meta[SPEC_KEY] = prov["spec"].encode()
    return schema.with_metadata(meta)


def read_provenance(schema: pa.Schema) -> dict | None:
    """The provenance object of a shard's schema, or None; ``SchemaError`` when it is not a
    bounded JSON object (``checks.parse_provenance``)."""
    from datasets_spec.checks import parse_provenance

    return parse_provenance((schema.metadata or {}).get(PROVENANCE_KEY))


def lookup(prov: dict, dotted: str) -> Any:
    cur: Any = prov
    for part in dotted.split("."):
        if not isinstance(cur, dict) or part not in cur:
            return None
        cur = cur[part]
    return cur


def compare(a: dict, b: dict, keys=COMPATIBILITY_KEYS) -> list[str]:
    """Human-readable differences between two provenance dicts on ``keys``."""
    out = []
    for path, name in keys:
        va, vb = lookup(a, path), lookup(b, path)
        if va != vb:
            out.append(f"{name} ({path}): {va!r} != {vb!r}")
    return out
