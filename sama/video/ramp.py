"""Where a blend starts and ends: the frames' progress along the line between two references.

In a dissolve or a fade, frame ``j`` is ``(1 - a_j) P + a_j Q`` plus the shots' own motion, with
``P`` the last frame before and ``Q`` the first after; ``a_j`` rises from 0 to 1 over the
transition and stays flat outside it. Projecting every thumbnail on ``Q - P`` gives ``a_j``
(``progress``); the transition is where it has left ``delta`` and not yet reached ``1 - delta``.
The references start at the edges of the measured window and are then moved next to the ramp
found, so the shots' own motion between the window edge and the transition adds no drift.

A wipe moves an edge instead of blending: there the share of changing pixels that already show
``Q`` (``wipe_share``) ramps from 0 to 1, and each pixel matches one of the two references.

Legend: ``x_TP`` T thumbnails flattened to P values (float32), ``p_P``/``q_P`` the references.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

DROP = 0.75  # a step below this share of the steps before it ends a blend (see _walk)


def progress(x_TP: np.ndarray, p_P: np.ndarray, q_P: np.ndarray) -> tuple[np.ndarray, float]:
    """``(a_T, residual)``: each frame's position on the line ``p -> q`` and the mean L1 off the
    line over the frames, relative to ``L1(p, q)`` (0: a perfect blend)."""
    v_P = q_P - p_P
    vv = float(v_P @ v_P)
    if vv <= 0.0:
        return np.zeros(len(x_TP), np.float32), 1.0
    a_T = (x_TP - p_P) @ v_P / vv
    off = np.abs(x_TP - p_P - np.clip(a_T, 0, 1)[:, None] * v_P).mean()
    return a_T, float(off / max(np.abs(v_P).mean(), 1e-6))


def _grow(a_T: np.ndarray, a: int, b: int, fix_a: bool, fix_b: bool) -> tuple[int, int]:
    """Move the references outwards while the frames beyond them keep the ramp's slope (half
    of it per frame): then they were inside the blend, not at its ends."""
    step = 0.5 / max(b - a, 1)
    na, nb = a, b
    while not fix_a and na > 0 and a_T[na] - a_T[na - 1] >= step:
        na -= 1
    while not fix_b and nb < len(a_T) - 1 and a_T[nb + 1] - a_T[nb] >= step:
        nb += 1
    return na, nb


def measure_ramp(
    thumbs: Sequence[np.ndarray],
    a: int,
    b: int,
    fix_a: bool = False,
    fix_b: bool = False,
    delta: float = 0.1,
    score: str = "blend",
) -> tuple[int, int, float, float]:
    """``(start, end, distance, residual)`` of the blend between ``thumbs[a]`` and ``thumbs[b]``.

    ``a`` and ``b`` start as two frames the blend passes between (a blend test's pair); they
    move out while the blend goes on beyond them (not past a ``fix_*`` one, e.g. the flat frame
    a fade ends in). The blend is then the frames whose progress from ``a`` to ``b`` is above
    ``delta`` and below ``1 - delta``. ``distance``: L1 between the final references (0-255);
    ``residual``: as in ``progress``. ``score="wipe"`` follows ``wipe_share`` instead (its
    ``mixed`` as the residual).
    """
    measure = progress if score == "blend" else wipe_share
    if not 0 <= a < b < len(thumbs):
        raise ValueError(f"references must satisfy 0 <= a < b < {len(thumbs)}; got {a}, {b}")
    x_TP = np.stack([t.reshape(-1) for t in thumbs]).astype(np.float32)
    for _ in range(6):
        a_T, _ = measure(x_TP, x_TP[a], x_TP[b])
        na, nb = _grow(a_T, a, b, fix_a, fix_b)
        if (na, nb) == (a, b):
            break
        a, b = na, nb
    a_T, resid = measure(x_TP[a : b + 1], x_TP[a], x_TP[b])
    # The contiguous run around the steepest step: frames past the ends (drifting with their
    # shot's own motion) never join it.
    mid = int(np.argmax(np.diff(a_T)))
    s, e = mid + 1, mid + 1
    while s > 0 and a_T[s - 1] > delta:
        s -= 1
    while e < len(a_T) and a_T[e] < 1.0 - delta:
        e += 1
    s, e = a + s, a + e
    if fix_a:
        s = a + 1
    if fix_b:
        e = b
    dist = float(np.abs(x_TP[b] - x_TP[a]).mean())
    return s, e, dist, resid


def _walk(steps: dict[int, float], j: int, way: int, limit: int, thr: float, drop: float) -> int:
    """From ``j``, the last frame the walk reaches (``way`` = -1 or +1) while each step stays
    above ``thr`` and above ``drop`` x the median of the last three steps walked (a blend's
    steps are even; the first step of the shot after it drops sharply even when the shot moves
    fast, then fades slowly, which a fixed threshold would follow)."""
    walked = [steps.get(j, 0.0)]
    while (j + way - limit) * way <= 0:
        nxt = steps.get(j + way, 0.0)
        if nxt < thr or nxt < drop * float(np.median(walked[-3:])):
            break
        j += way
        walked.append(nxt)
    return j


def refine_by_steps(
    steps: dict[int, float],
    s: int,
    e: int,
    lo: int,
    hi: int,
    contrast: float = 1.5,
    drop: float = DROP,
) -> tuple[int, int]:
    """Edges of the transition ``[s, e)`` from the frame-to-frame steps (``steps[j]`` = L1 of
    frames ``j-1`` and ``j``): inside, every step carries the blend's drift on top of the shots'
    motion, so the steps ``s .. e`` are raised. From the middle, a walk each way follows them
    while they stay above halfway between the median step inside and that of the shot on that
    side (``_walk``); a side whose shot moves as much as the blend (below ``contrast`` x) keeps
    its edge. A wipe's steps follow what the edge uncovers, not even: pass ``drop=0``.
    Measured on the labelled set: the projection alone put dissolve starts up to 5
    frames late when the incoming shot moves, because its frames then match the reference only
    where it is close in time."""
    inner = [steps[j] for j in range(s, e + 1) if j in steps]
    if len(inner) < 2:
        return s, e
    m_in = float(np.median(inner))
    mid = (s + e) // 2
    left = [steps[j] for j in range(lo + 1, s - 2) if j in steps]
    right = [steps[j] for j in range(e + 3, hi + 1) if j in steps]
    if len(left) >= 3 and m_in >= contrast * float(np.median(left)):
        s = _walk(steps, mid, -1, lo + 1, (m_in + float(np.median(left))) / 2, drop)
    if len(right) >= 3 and m_in >= contrast * float(np.median(right)):
        e = _walk(steps, mid, +1, hi, (m_in + float(np.median(right))) / 2, drop)
    return s, max(e, s)


def wipe_share(
    x_TP: np.ndarray, p_P: np.ndarray, q_P: np.ndarray, min_change: float = 24.0
) -> tuple[np.ndarray, float]:
    """``(share_T, mixed)``: per frame, the share of the pixels that differ between ``p`` and
    ``q`` (by more than ``min_change``) that are closer to ``q``; ``mixed`` is the mean, over
    those pixels and frames, of the distance to the nearer reference relative to ``|p - q|``
    (0 when every pixel shows one reference or the other, as in a wipe; 0.5 in a dissolve)."""
    diff_P = np.abs(q_P - p_P)
    changed = diff_P > min_change
    if changed.sum() < 8 or not len(x_TP):
        return np.zeros(len(x_TP), np.float32), 1.0
    x = x_TP[:, changed]
    to_p, to_q = np.abs(x - p_P[changed]), np.abs(x - q_P[changed])
    share_T = (to_q < to_p).mean(axis=1)
    mixed = float((np.minimum(to_p, to_q) / diff_P[changed]).mean())
    return share_T, mixed
