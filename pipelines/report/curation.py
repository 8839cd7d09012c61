"""The report's curation sections: what the build and ``sama dedup`` removed on purpose.

``curation``: the error rows that are curation, not failure (``pipelines/dataset/curation.py``:
clip filters, the clean-clip guard, the judge's score filter, salvage notes), counted by kind
with what each means and one example. ``dedup``: the ``dedup/v1`` table's counts, threshold,
method and keep rule, and a few marked pairs with both clips' pictures side by side (the
stored ``preview`` of a v2 row; the anchor frame read from the source video otherwise),
spread over the similarity range, lowest first: the pairs nearest the threshold are the ones
worth a look.
"""

from __future__ import annotations

from collections import defaultdict
from html import escape

from pipelines.dataset import curation
from pipelines.dataset.dedup_table import DedupTable
from pipelines.dataset.layout import DatasetDir
from pipelines.report.data import ReportData, pick, read_row
from pipelines.report.html import picture, section, table
from pipelines.report.previews import Picture, source_frame_picture, stored_preview_picture

PAIR_COLUMNS = ["clip_id", "preview", "source_uri", "start_frame", "anchor_frame_indices", "fps"]


def curation_section(data: ReportData) -> str:
    e = data.columns["errors"]
    rows_of: dict[str, list[int]] = defaultdict(list)
    for i, kind in enumerate(e["kind"]):
        if curation.is_curation(kind):
            rows_of[kind].append(i)
    if not rows_of:
        return section("curation", "Curation", "<p class='muted'>no clip or pair was filtered, "
                       "guarded off or salvaged</p>")  # fmt: skip
    rows = []
    for kind, meaning in curation.CURATION_KINDS.items():
        ix = rows_of.get(kind)
        if ix:
            rows.append([kind, meaning, len(ix), e["stage"][ix[0]], e["item_id"][ix[0]],
                         e["message"][ix[0]]])  # fmt: skip
    note = (
        "<p class='muted'>Error rows the build made on purpose, apart from the failures: "
        "clips dropped by a filter or the clean-clip guard, pairs under the judge's "
        "thresholds, and damaged inputs whose good frames were used (a note; their clips are "
        "in the data). One example each.</p>"
    )
    cols = ["kind", "what", "rows", "stage", "example item", "message"]
    return section("curation", "Curation", note + table(cols, rows, (2,)))


def _clip_picture(ds: DatasetDir, data: ReportData, index: dict[str, int], clip_id: str) -> Picture:
    if clip_id not in index:
        return Picture(clip_id, note="not in the clips")
    row = read_row(ds, data.locations["clips"], index[clip_id], PAIR_COLUMNS)
    stored = stored_preview_picture(row)
    if stored is not None:
        return Picture(clip_id, stored.data_uri, "stored preview")
    frame = int(row["start_frame"]) + int((row.get("anchor_frame_indices") or [0])[0])
    pic = source_frame_picture(clip_id, row["source_uri"], frame, row.get("fps"))
    return Picture(clip_id, pic.data_uri, pic.note or "anchor frame (source video)")


def dedup_section(
    ds: DatasetDir, data: ReportData, dedup: DedupTable | None, examples: int = 6
) -> str:
    if dedup is None:
        return section("dedup", "Near-duplicates", "<p class='muted'>no dedup table (run "
                       "<code>sama dedup ROOT</code>)</p>")  # fmt: skip
    s = dedup.summary()
    facts = [
        ["duplicates marked", s["duplicates"]],
        ["kept clips with duplicates", s["groups"]],
        ["clips compared", s["clips_compared"]],
        ["threshold (cosine)", s["threshold"]],
        ["method", s["method"]],
        ["keep rule", s["keep_rule"]],
        ["table", ", ".join(dedup.paths)],
    ]
    html = table(["what", "value"], facts)
    if dedup.problems:
        html += "<p class='bad'>The table has problems (see Validation).</p>"
    pairs = sorted(dedup.pairs(), key=lambda p: (p[2], p[0]))
    index = {c: i for i, c in enumerate(data.columns["clips"]["clip_id"])}
    figs = []
    for i in pick(len(pairs), examples):
        dup, kept, sim = pairs[i]
        pics = picture(_clip_picture(ds, data, index, kept)) + picture(
            _clip_picture(ds, data, index, dup)
        )
        figs.append(
            f"<figure data-kind='dedup'><div class='pics'>{pics}</div><figcaption><b>"
            f"{escape(dup)}</b> duplicates <b>{escape(kept)}</b> (kept)<div class='meta'>"
            f"cosine {sim:.4f}</div></figcaption></figure>"
        )
    if figs:
        html += (
            "<h3>Examples</h3><p class='muted'>Kept clip left, its marked duplicate right; "
            "spread over the similarity range, lowest first.</p>"
            f"<div class='grid'>{''.join(figs)}</div>"
        )
    return section("dedup", "Near-duplicates", html)
