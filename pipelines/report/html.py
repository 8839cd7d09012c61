"""HTML pieces every section of the report is made of (``pipelines/report/page.py``, ``curation.py``).

Every text goes through ``html.escape``: captions, ids and messages come from the data.
"""

from __future__ import annotations

from html import escape

from pipelines.report.previews import Picture


def section(id_: str, title: str, inner: str) -> str:
    return f'<section id="{id_}"><h2>{escape(title)}</h2>{inner}</section>'


def table(header: list[str], rows: list[list], num_cols: tuple[int, ...] = ()) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>"
        + "".join(
            f"<td{' class=num' if i in num_cols else ''}>{escape(str(v))}</td>"
            for i, v in enumerate(r)
        )
        + "</tr>"
        for r in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def picture(p: Picture) -> str:
    if p.data_uri:
        img = f"<img src='{p.data_uri}' alt='{escape(p.label)}' title='{escape(p.note)}'>"
    else:
        img = f"<div class='missing'>{escape(p.note or 'n/a')}</div>"
    return f"<div class='pic'>{img}{escape(p.label)}</div>"
