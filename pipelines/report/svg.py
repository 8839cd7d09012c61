"""Bar charts and histograms as inline SVG strings, so the report needs no plotting library and
stays one self-contained HTML file."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from html import escape

WIDTH, HEIGHT = 420, 240
LEFT, RIGHT, TOP, BOTTOM = 48, 12, 28, 58
BAR_COLOR = "#3b6ea8"


def _nice_max(v: float) -> float:
    if v <= 0:
        return 1.0
    mag = 10 ** math.floor(math.log10(v))
    for m in (1, 2, 2.5, 5, 10):
        if v <= m * mag:
            return m * mag
    return 10 * mag


def _fmt(v: float) -> str:
    if abs(v - round(v)) < 1e-9:
        return str(int(round(v)))
    return f"{v:.3g}"


def bar_chart(
    labels: Sequence[str],
    counts: Sequence[float],
    title: str,
    xlabel: str = "",
    ylabel: str = "count",
    css_class: str = "plot",
) -> str:
    """One bar per label; the count is written above each bar."""
    if not labels:
        return empty_plot(title, css_class)
    pw, ph = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    ymax = _nice_max(max(counts))
    slot = pw / len(labels)
    parts = [_frame(title, xlabel, ylabel, ymax)]
    rotate = len(labels) > 8 or max(len(s) for s in labels) * 6 > slot
    for i, (lab, c) in enumerate(zip(labels, counts, strict=True)):
        h = ph * c / ymax
        x = LEFT + i * slot + slot * 0.1
        y = TOP + ph - h
        parts.append(
            f'<rect class="bar" x="{x:.1f}" y="{y:.1f}" width="{slot * 0.8:.1f}" '
            f'height="{h:.1f}" fill="{BAR_COLOR}"><title>{escape(lab)}: {_fmt(c)}'
            f"</title></rect>"
        )
        if len(labels) <= 24:
            parts.append(
                f'<text x="{x + slot * 0.4:.1f}" y="{y - 3:.1f}" font-size="9" '
                f'text-anchor="middle">{_fmt(c)}</text>'
            )
        cx, cy = LEFT + (i + 0.5) * slot, TOP + ph + 12
        if rotate:
            parts.append(
                f'<text x="{cx:.1f}" y="{cy:.1f}" font-size="9" text-anchor="end" '
                f'transform="rotate(-40 {cx:.1f} {cy:.1f})">{escape(lab)}</text>'
            )
        else:
            parts.append(
                f'<text x="{cx:.1f}" y="{cy:.1f}" font-size="10" '
                f'text-anchor="middle">{escape(lab)}</text>'
            )
    return _svg(parts, title, css_class)


def histogram(
    values: Sequence[float],
    title: str,
    xlabel: str = "",
    bins: int = 20,
    integer: bool = False,
    value_range: tuple[float, float] | None = None,
    css_class: str = "plot",
) -> str:
    """Histogram of ``values`` over ``value_range`` (default: their min..max). Integer data
    spanning few values, or data with at most 12 distinct values, gets one bar per value."""
    vals = [float(v) for v in values if v is not None and math.isfinite(v)]
    if not vals:
        return empty_plot(title, css_class)
    lo, hi = value_range or (min(vals), max(vals))
    distinct = sorted(set(vals))
    if value_range is None and (integer and hi - lo < 25 or len(distinct) <= 12):
        keys = list(range(int(lo), int(hi) + 1)) if integer else distinct
        counts = Counter(vals)
        return bar_chart(
            [_fmt(k) for k in keys],
            [counts.get(k, 0) for k in keys],
            title,
            xlabel,
            css_class=css_class,
        )
    if hi <= lo:
        hi = lo + 1.0
    width = (hi - lo) / bins
    hist = [0] * bins
    for v in vals:
        hist[min(bins - 1, max(0, int((v - lo) / width)))] += 1
    return _hist_svg(hist, lo, hi, title, xlabel, css_class)


def _hist_svg(
    hist: list[int], lo: float, hi: float, title: str, xlabel: str, css_class: str
) -> str:
    pw, ph = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    ymax = _nice_max(max(hist))
    parts = [_frame(title, xlabel, "count", ymax)]
    bw = pw / len(hist)
    step = (hi - lo) / len(hist)
    for i, c in enumerate(hist):
        h = ph * c / ymax
        a, b = lo + i * step, lo + (i + 1) * step
        parts.append(
            f'<rect class="bar" x="{LEFT + i * bw:.1f}" y="{TOP + ph - h:.1f}" '
            f'width="{max(bw - 1, 0.5):.1f}" height="{h:.1f}" fill="{BAR_COLOR}">'
            f"<title>[{_fmt(a)}, {_fmt(b)}): {c}</title></rect>"
        )
    for k in range(5):
        v = lo + (hi - lo) * k / 4
        x = LEFT + pw * k / 4
        parts.append(
            f'<text x="{x:.1f}" y="{TOP + ph + 14}" font-size="10" '
            f'text-anchor="middle">{_fmt(v)}</text>'
        )
    return _svg(parts, title, css_class)


def _frame(title: str, xlabel: str, ylabel: str, ymax: float) -> str:
    pw, ph = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    out = [
        f'<text x="{WIDTH / 2}" y="16" font-size="13" font-weight="bold" '
        f'text-anchor="middle">{escape(title)}</text>',
        f'<line x1="{LEFT}" y1="{TOP + ph}" x2="{LEFT + pw}" y2="{TOP + ph}" stroke="#333"/>',
        f'<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{TOP + ph}" stroke="#333"/>',
    ]
    for k in range(5):
        v = ymax * k / 4
        y = TOP + ph - ph * k / 4
        out.append(f'<line x1="{LEFT}" y1="{y:.1f}" x2="{LEFT + pw}" y2="{y:.1f}" stroke="#ddd"/>')
        out.append(
            f'<text x="{LEFT - 4}" y="{y + 3:.1f}" font-size="10" '
            f'text-anchor="end">{_fmt(v)}</text>'
        )
    out.append(
        f'<text x="{LEFT + pw / 2}" y="{HEIGHT - 6}" font-size="11" '
        f'text-anchor="middle">{escape(xlabel)}</text>'
    )
    out.append(
        f'<text x="12" y="{TOP + ph / 2}" font-size="11" text-anchor="middle" '
        f'transform="rotate(-90 12 {TOP + ph / 2})">{escape(ylabel)}</text>'
    )
    return "".join(out)


def empty_plot(title: str, css_class: str = "plot") -> str:
    return _svg(
        [
            f'<text x="{WIDTH / 2}" y="16" font-size="13" font-weight="bold" '
            f'text-anchor="middle">{escape(title)}</text>',
            f'<text x="{WIDTH / 2}" y="{HEIGHT / 2}" font-size="12" fill="#888" '
            f'text-anchor="middle">no data</text>',
        ],
        title,
        css_class + " empty",
    )


def _svg(parts: list[str], title: str, css_class: str) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="{css_class}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" role="img" '
        f'aria-label="{escape(title)}" data-title="{escape(title)}">' + "".join(parts) + "</svg>"
    )
