"""``sama report``: one self-contained HTML page a person can read before training or publishing.

Sections (element ids): ``counts`` (inputs, clips, pairs, errors by kind), ``validation``,
``distributions`` (inline SVG plots: clip duration, shots per video, aspect buckets, frame
counts, caption length, judge scores, errors by kind), ``errors`` (the most frequent failures),
``curation`` and ``dedup`` (what filters, the clean-clip guard, salvage and ``sama dedup``
removed or noted: ``pipelines/report/curation.py``), ``samples`` (anchor frames from the source videos and latent previews, with captions) and
``provenance`` (encoders, policies, build stats). No scripts, no external files.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from datetime import UTC, datetime
from html import escape
from pathlib import Path

from pipelines.dataset import curation
from pipelines.dataset.dedup_table import DedupTable, read_dedup_table
from pipelines.dataset.layout import build_stats, num_inputs, open_dataset_dir
from pipelines.dataset.validate import ValidationReport, validate
from pipelines.report import svg
from pipelines.report.curation import curation_section, dedup_section
from pipelines.report.data import (
    ReportData,
    Sample,
    cheap_latent_picture,
    collect_samples,
    read_stat_columns,
)
from pipelines.report.html import picture, section, table
from pipelines.report.previews import Picture, VaeDecoder, png_data_uri, upscale

SCORES = (
    ("score_if", "instruction following"),
    ("score_vq", "visual quality"),
    ("score_cp", "content preservation"),
    ("score_mc", "motion consistency"),
)
CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#222;
background:#fafafa}h1{margin:0 0 4px}h2{border-bottom:2px solid #3b6ea8;padding-bottom:4px;
margin-top:32px}.muted{color:#666;font-size:13px}table{border-collapse:collapse;font-size:13px;
background:#fff}td,th{border:1px solid #ccc;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#eef2f7}.num{text-align:right}.ok{color:#1a7f37;font-weight:bold}
.bad{color:#c62828;font-weight:bold}.plots{display:flex;flex-wrap:wrap;gap:12px}
.plots svg{background:#fff;border:1px solid #ddd}.grid{display:grid;
grid-template-columns:repeat(auto-fill,minmax(300px,1fr));gap:12px}figure{margin:0;
background:#fff;border:1px solid #ddd;padding:8px}figure .pics{display:flex;flex-wrap:wrap;
gap:6px}figure .pic{text-align:center;font-size:11px;color:#555}figure img{display:block;
height:96px;image-rendering:pixelated;border:1px solid #bbb}.missing{width:96px;height:96px;
display:flex;align-items:center;justify-content:center;background:#eee;color:#888;
font-size:10px;border:1px dashed #bbb}figcaption{font-size:13px;margin-top:6px}
figcaption .meta{color:#666;font-size:11px}.cards{display:flex;gap:12px;flex-wrap:wrap}
.card{background:#fff;border:1px solid #ddd;padding:8px 16px;min-width:90px}
.card b{display:block;font-size:24px}
"""


def build_report(
    root: str,
    *,
    fs=None,
    samples: int = 12,
    vae_dir: str | None = None,
    device: str = "cpu",
    validation: ValidationReport | None = None,
    run_validation: bool = True,
) -> str:
    """The report of the dataset at ``root`` as an HTML string."""
    ds = open_dataset_dir(root, fs)
    if validation is None and run_validation:
        validation = validate(root, fs)
    data = read_stat_columns(ds)
    latent_picture = cheap_latent_picture
    if vae_dir:
        decoder = VaeDecoder(vae_dir, device)

        def latent_picture(label, latents_CTHW):
            rgb = upscale(decoder.decode_first_frame(latents_CTHW))
            return Picture(f"{label} (VAE)", png_data_uri(rgb), "VAE decode, frame 0")

    data.samples = collect_samples(ds, data, samples, latent_picture)
    dedup = read_dedup_table(root, fs)
    body = [
        _header(root, validation),
        _counts(data, num_inputs(ds.summary), dedup),
        _validation(validation),
        _distributions(data),
        _errors(data),
        curation_section(data),
        dedup_section(ds, data, dedup),
        _samples(data.samples),
        _provenance(validation, build_stats(ds.summary)),
    ]
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>sama dataset report: {escape(root)}</title><style>{CSS}</style></head>"
        f"<body>{''.join(body)}</body></html>"
    )


def write_report(root: str, out: str | Path, **kwargs) -> Path:
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(build_report(root, **kwargs), encoding="utf-8")
    return out


def _header(root: str, validation: ValidationReport | None) -> str:
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    if validation is None:
        status = '<span class="muted">not validated</span>'
    elif validation.ok:
        status = '<span class="ok">valid</span>'
    else:
        status = f'<span class="bad">INVALID ({len(validation.errors)} errors)</span>'
    return (
        f"<header><h1>sama dataset report</h1><div class='muted'>{escape(root)} · "
        f"generated {when} · {status}</div></header>"
    )


def _counts(data: ReportData, n_inputs: int | None, dedup: DedupTable | None) -> str:
    clips, pairs, errors = (data.columns[k] for k in ("clips", "pairs", "errors"))
    media = Counter(pairs["media_type"])
    cards = [
        ("inputs", "?" if n_inputs is None else n_inputs),
        ("clips", data.rows("clips")),
        ("videos with clips", len(set(clips["video_id"]))),
        ("pairs", data.rows("pairs")),
        ("image pairs", media.get("image", 0)),
        ("video pairs", media.get("video", 0)),
        ("errors", data.rows("errors")),
        ("of which curation", sum(map(curation.is_curation, errors["kind"]))),
        ("near-duplicates", "-" if dedup is None else len(dedup.clip_id)),
    ]
    html = (
        "<div class='cards'>"
        + "".join(f"<div class='card'><b>{escape(str(v))}</b>{escape(k)}</div>" for k, v in cards)
        + "</div>"
    )
    by_kind = _failures(errors)
    html += "<h3>Errors by kind</h3><p class='muted'>Failures only; curation rows (filters, "
    html += "clean-clip guard, salvage notes) are counted under Curation.</p>" + (
        table(["kind", "count"], [list(x) for x in by_kind], (1,))
        if by_kind
        else "<p class='muted'>no errors</p>"
    )
    shards = [[k, n] for k, n in data.shard_counts.items()]
    html += "<h3>Shards</h3>" + table(["kind", "shards"], shards, (1,))
    if data.skipped:
        html += (
            "<p class='bad'>Unreadable shards (left out of every count):</p><ul>"
            + "".join(f"<li>{escape(s)}</li>" for s in data.skipped)
            + "</ul>"
        )
    return section("counts", "Counts", html)


def _validation(v: ValidationReport | None) -> str:
    if v is None:
        return section("validation", "Validation", "<p class='muted'>skipped</p>")
    verdict = (
        "<p class='ok'>All checks passed.</p>"
        if v.ok
        else f"<p class='bad'>{len(v.errors)} error(s).</p>"
    )
    rows = [[p.level, p.check, p.shard or "", p.message] for p in v.problems[:100]]
    listed = table(["level", "check", "shard", "message"], rows) if rows else ""
    return section("validation", "Validation", verdict + listed)


def _distributions(data: ReportData) -> str:
    clips, pairs, errors = (data.columns[k] for k in ("clips", "pairs", "errors"))
    dur = [n / f for n, f in zip(clips["num_frames"], clips["fps"], strict=True) if f]
    shots: dict[str, set] = defaultdict(set)
    for v, s in zip(clips["video_id"], clips["shot_index"], strict=True):
        shots[v].add(s)
    buckets = Counter(
        f"{w}x{h}"
        for k in (clips, pairs)
        for w, h in zip(k["bucket_width"], k["bucket_height"], strict=True)
    )
    frames = clips["num_frames"] + [
        n for n, m in zip(pairs["num_frames"], pairs["media_type"], strict=True) if m == "video"
    ]
    words = [len(c.split()) for c in clips["caption"] if c is not None]
    instr = [len(c.split()) for c in pairs["instruction"] if c is not None]
    top = buckets.most_common()
    plots, left_out = [], []
    if clips["clip_id"]:
        plots += [
            svg.histogram(dur, "Clip duration", "seconds"),
            svg.histogram(
                [len(s) for s in shots.values()], "Shots per video", "shots used", integer=True
            ),
        ]
    if top:
        plots.append(
            svg.bar_chart([b for b, _ in top], [c for _, c in top], "Aspect buckets", "W x H (px)")
        )
        plots.append(
            svg.histogram(frames, "Frame counts (clips + video pairs)", "frames", integer=True)
        )
    if clips["clip_id"]:
        plots.append(svg.histogram(words, "Caption length", "words", integer=True))
    else:
        left_out.append("clip plots (no clips)")
    if pairs["pair_id"]:
        plots.append(svg.histogram(instr, "Instruction length", "words", integer=True))
        plots += [
            svg.histogram(pairs[c], f"Judge score: {n}", "score", bins=18, value_range=(1.0, 10.0))
            for c, n in SCORES
        ]
    else:
        left_out.append("instruction and judge-score plots (no pairs)")
    by_kind = _failures(errors)
    if by_kind:
        plots.append(
            svg.bar_chart(
                [k for k, _ in by_kind], [c for _, c in by_kind], "Errors by kind", "kind"
            )
        )
    note = f"<p class='muted'>Left out: {'; '.join(left_out)}.</p>" if left_out else ""
    return section(
        "distributions", "Distributions", f"<div class='plots'>{''.join(plots)}</div>{note}"
    )


def _failures(errors: dict[str, list]) -> list[tuple[str, int]]:
    """Error rows by kind, curation left out, most frequent first."""
    return Counter(k for k in errors["kind"] if not curation.is_curation(k)).most_common()


def _errors(data: ReportData, limit: int = 25) -> str:
    e = data.columns["errors"]
    groups: dict[tuple, list[int]] = defaultdict(list)
    for i, key in enumerate(zip(e["stage"], e["kind"], strict=True)):
        if not curation.is_curation(key[1]):  # counted under Curation
            groups[key].append(i)
    worst = sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0]))[:limit]
    rows = [
        [stage, kind, len(ix), e["item_id"][ix[0]], e["input_uri"][ix[0]], e["message"][ix[0]]]
        for (stage, kind), ix in worst
    ]
    if not rows:
        return section("errors", "Worst errors", "<p class='muted'>no errors</p>")
    note = "<p class='muted'>Grouped by stage and kind, most frequent first; one example each.</p>"
    listed = table(["stage", "kind", "count", "example item", "input", "message"], rows, (2,))
    return section("errors", "Worst errors", note + listed)


def _samples(samples: list[Sample]) -> str:
    if not samples:
        return section("samples", "Samples", "<p class='muted'>no clips or pairs</p>")
    figs = []
    for s in samples:
        pics = "".join(picture(p) for p in s.pictures)
        figs.append(
            f"<figure data-kind='{s.kind}'><div class='pics'>{pics}</div><figcaption>"
            f"<b>{escape(s.id)}</b>: {escape(s.text)}<div class='meta'>{escape(s.meta)}"
            "</div></figcaption></figure>"
        )
    note = (
        "<p class='muted'>Anchor frames are read from the source videos. Latent previews: "
        "<i>(VAE)</i> = latent frame 0 decoded by the Wan VAE (<code>--vae</code>); "
        "<i>(ch 0-2)</i> = latent channels 0-2 of latent frame 0 shown as RGB, no decoding.</p>"
    )
    return section("samples", "Samples", note + f"<div class='grid'>{''.join(figs)}</div>")


def _flatten(d: dict, prefix: str = "") -> list[list[str]]:
    rows = []
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v and key != "build_config":
            rows += _flatten(v, key + ".")
        else:
            text = json.dumps(v, sort_keys=True, default=str)
            rows.append([key, text if len(text) <= 160 else text[:157] + "..."])
    return rows


def _provenance(v: ValidationReport | None, stats: dict) -> str:
    prov = v.provenance() if v is not None else None
    html = table(["key", "value"], _flatten(prov)) if prov else "<p class='muted'>unknown</p>"
    if stats:
        html += "<h3>Build stats</h3>" + table(
            ["stat", "value"], [[k, s] for k, s in stats.items()]
        )
    return section("provenance", "Provenance", html)
