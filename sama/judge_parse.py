"""Reading a VLM judge's answer: the 1-10 scores, whatever shape the answer takes (SAMA.md §4).

Why a parser this forgiving: sampled VLM answers (the judge runs 3 times per pair) come as JSON
in fences, with single quotes, trailing commas or unquoted keys, with prose around it, with other
key spellings ("IF", "Instruction Following (IF)", "visual_quality_score"), as "8/10" strings,
as nested objects, or as a plain "IF: 8, VQ: 9" list. A run that loses its scores is a wasted
VLM call; a wrong score is worse, so a missing or out-of-range score raises ``JudgeParseError``
(the judge leaves that run out of the mean) instead of being guessed.
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

IMAGE_KEYS = ("instruction_following", "visual_quality", "content_preservation")
VIDEO_KEYS = (*IMAGE_KEYS, "motion_consistency")


class JudgeParseError(ValueError):
    """A judge answer that does not hold every required score in 1..10."""


_ALIASES = {
    "instruction_following": "instruction_following",
    "instruction_follow": "instruction_following",
    "instruction_adherence": "instruction_following",
    "instruction_compliance": "instruction_following",
    "instruction": "instruction_following",
    "following": "instruction_following",
    "if": "instruction_following",
    "visual_quality": "visual_quality",
    "quality": "visual_quality",
    "image_quality": "visual_quality",
    "video_quality": "visual_quality",
    "visual": "visual_quality",
    "vq": "visual_quality",
    "content_preservation": "content_preservation",
    "content_preserving": "content_preservation",
    "content_consistency": "content_preservation",
    "preservation": "content_preservation",
    "cp": "content_preservation",
    "motion_consistency": "motion_consistency",
    "motion": "motion_consistency",
    "temporal_consistency": "motion_consistency",
    "motion_quality": "motion_consistency",
    "mc": "motion_consistency",
}
_AFFIX = re.compile(r"^(?:scores?|ratings?)_|_(?:scores?|ratings?|points?)$")
_SCORE_HOLDERS = ("score", "value", "rating", "points")
_NUMBER = re.compile(
    r"^\s*(\d+(?:\.\d+)?)\s*(?:/\s*(\d+(?:\.\d+)?)|out\s+of\s+(\d+(?:\.\d+)?))?", re.IGNORECASE
)
_KV = re.compile(
    r"([A-Za-z][A-Za-z _\-()]{0,48}?)[\s*\"'`]*(?::|=|-|\u2013|is)[\s*\"'`]*"
    r"(\d+(?:\.\d+)?(?:\s*/\s*\d+(?:\.\d+)?|\s+out\s+of\s+\d+)?)",
    re.IGNORECASE,
)
_FENCED = re.compile(r"```(?:json|JSON|javascript|python)?\s*(.*?)```", re.DOTALL)


def canonical_key(key: str) -> str | None:
    """'Instruction Following (IF)', 'IF', 'instruction_following_score' -> the score's name."""
    k = str(key).strip().lower()
    short = re.search(r"\(([a-z]{2})\)", k)
    k = re.sub(r"\(.*?\)", " ", k)
    k = _AFFIX.sub("", re.sub(r"[^a-z0-9]+", "_", k).strip("_"))
    found = _ALIASES.get(k) or _ALIASES.get(_AFFIX.sub("", k))
    if found is None and short:
        found = _ALIASES.get(short.group(1))
    return found


def score_value(value: Any) -> float | None:
    """8, 8.5, "8", "8/10", "8 out of 10", {"score": 8}, [8, "why"] -> float; else None."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, Mapping):
        for k in _SCORE_HOLDERS:
            if k in value:
                return score_value(value[k])
        return None
    if isinstance(value, list | tuple):
        return score_value(value[0]) if value else None
    if isinstance(value, str):
        m = _NUMBER.match(value)
        if not m:
            return None
        denom = m.group(2) or m.group(3)
        if denom is not None and float(denom) != 10:
            raise JudgeParseError(f"score {value!r} is not on a 1-10 scale")
        return float(m.group(1))
    return None


def _balanced_objects(text: str) -> list[tuple[int, str]]:
    """(start, span) of every outermost {...} span, respecting quoted strings."""
    spans, depth, start, quote, escaped = [], 0, -1, "", False
    for i, ch in enumerate(text):
        if quote:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == quote:
                quote = ""
        elif ch in "\"'" and depth > 0 and not (ch == "'" and text[i - 1 : i].isalnum()):
            quote = ch
        elif ch == "{":
            depth, start = depth + 1, (i if depth == 0 else start)
        elif ch == "}" and depth > 0:
            depth -= 1
            if depth == 0:
                spans.append((start, text[start : i + 1]))
    return spans


def _load_relaxed(blob: str) -> Any:
    """JSON, then JSON without trailing commas / with quoted keys, then a Python literal."""
    no_trailing = re.sub(r",\s*([}\]])", r"\1", blob)
    quoted_keys = re.sub(r"([{,]\s*)([A-Za-z_][\w \-]*?)\s*:", r'\1"\2":', no_trailing)
    for candidate in (blob, no_trailing, quoted_keys):
        try:
            return json.loads(candidate)
        except ValueError:
            pass
    py = re.sub(r"\btrue\b", "True", no_trailing)
    py = re.sub(r"\bfalse\b", "False", re.sub(r"\bnull\b", "None", py))
    try:
        return ast.literal_eval(py)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return None


def _collect(obj: Any, found: dict[str, float]) -> None:
    """Walk a parsed object; record the first value met for each known score key."""
    if not isinstance(obj, Mapping):
        if isinstance(obj, list):
            for item in obj:
                _collect(item, found)
        return
    for k, v in obj.items():
        name = canonical_key(k)
        value = score_value(v) if name else None
        if name and value is not None:
            found.setdefault(name, value)
        elif isinstance(v, Mapping | list):
            _collect(v, found)
    # {"criterion": "Instruction following", "score": 8}
    label = next((obj[k] for k in ("criterion", "name", "metric", "aspect") if k in obj), None)
    if isinstance(label, str) and (name := canonical_key(label)):
        value = next((score_value(obj[k]) for k in _SCORE_HOLDERS if k in obj), None)
        if value is not None:
            found.setdefault(name, value)


def _from_key_values(text: str) -> dict[str, float]:
    """'IF: 8, VQ: 9' / '**Visual quality**: 9/10' lines; the last mention of a key wins."""
    found: dict[str, float] = {}
    for m in _KV.finditer(text.replace("*", "").replace("#", "")):
        words = m.group(1).strip(" -_")
        # try the longest tail of the label that names a score ("1. Visual quality" -> ...)
        tokens = words.split()
        for i in range(len(tokens)):
            name = canonical_key(" ".join(tokens[i:]))
            if name:
                value = score_value(m.group(2))
                if value is not None:
                    found[name] = value
                break
    return found


def _check(found: dict[str, float], keys: Sequence[str], text: str) -> dict[str, float]:
    missing = [k for k in keys if k not in found]
    if missing:
        raise JudgeParseError(f"missing {missing} in answer {text[:120]!r}")
    bad = {k: found[k] for k in keys if not 1 <= found[k] <= 10}
    if bad:
        raise JudgeParseError(f"scores out of 1..10: {bad}")
    return {k: found[k] for k in keys}


def parse_scores(text: str, video: bool) -> dict[str, float]:
    """The scores in a judge answer, keyed by ``VIDEO_KEYS``/``IMAGE_KEYS``; or JudgeParseError.

    JSON objects (fenced or bare; relaxed: single quotes, trailing commas, unquoted keys) are
    tried last to first, and the last one holding every score wins (a final answer after a
    draft or an echoed template). Otherwise scores are gathered from partial objects and from
    "Key: value" text, where the last mention of a key wins.
    """
    if not isinstance(text, str) or not text.strip():
        raise JudgeParseError("empty answer")
    keys = VIDEO_KEYS if video else IMAGE_KEYS
    fenced = [(m.start(), m.group(1)) for m in _FENCED.finditer(text)]
    blobs = sorted(fenced + _balanced_objects(text), key=lambda b: b[0])
    partial: dict[str, float] = {}
    for _, blob in reversed(blobs):  # the last complete object is the final answer
        obj = _load_relaxed(blob.strip())
        if obj is None:
            continue
        found: dict[str, float] = {}
        _collect(obj, found)
        if all(k in found for k in keys):
            return _check(found, keys, text)
        for k, v in found.items():
            partial.setdefault(k, v)
    found = {**_from_key_values(text), **partial}
    return _check(found, keys, text)
