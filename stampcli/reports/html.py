"""A report as one self-contained HTML page: inline CSS and SVG, no script, no network.

It must open offline and as a mail attachment, so nothing is fetched: no CDN,
no web font (the system's sans-serif), no image but the inline SVG charts of
:mod:`stampcli.reports.charts`. Every text from the store (addresses, domains,
link URLs, campaign names, error classes) goes through :func:`html.escape`; the
charts' labels are escaped by the SVG writer. It reads on a phone (the charts
scale to the width, wide tables scroll), prints (no dark background, charts kept
whole), and follows the reader's dark mode (``prefers-color-scheme``).
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

from stampcli import __version__
from stampcli.reports import charts
from stampcli.reports.formats import cell_text, when
from stampcli.reports.sections import Chart, Section

CSS = """
:root { color-scheme: light dark; --fg: #1f2328; --muted: #59636e; --bg: #ffffff;
  --line: #d1d9e0; --head: #f6f8fa; --bad: #b42318; --warn: #9a6700; }
@media (prefers-color-scheme: dark) {
  :root { --fg: #e6edf3; --muted: #9198a1; --bg: #0d1117; --line: #30363d; --head: #161b22;
    --bad: #ff7b72; --warn: #d29922; } }
* { box-sizing: border-box; }
body { margin: 0 auto; max-width: 980px; padding: 16px; font: 15px/1.45 system-ui,
  -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--fg); background: var(--bg); }
h1 { font-size: 1.5em; margin: 0 0 4px; word-break: break-word; }
h2 { font-size: 1.2em; margin: 28px 0 8px; border-bottom: 1px solid var(--line); }
.meta, .note { color: var(--muted); font-size: .9em; }
.flag { padding: 6px 10px; border-left: 4px solid var(--warn); margin: 6px 0; }
.flag.bad { border-color: var(--bad); }
figure { margin: 8px 0; }
figure svg { width: 100%; height: auto; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; font-size: .9em; min-width: 50%; }
th, td { padding: 4px 8px; border-bottom: 1px solid var(--line); text-align: right;
  white-space: nowrap; }
th { background: var(--head); position: sticky; top: 0; }
th:first-child, td:first-child { text-align: left; white-space: normal; word-break: break-all;
  min-width: 9em; }
th { white-space: normal; vertical-align: bottom; }
details summary { cursor: pointer; color: var(--muted); }
@media print { :root { --fg: #000; --bg: #fff; --muted: #444; --head: #eee; }
  section { break-inside: avoid; } details { display: block; } th { position: static; } }
"""


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def chart_svg(chart: Chart) -> str:
    """The SVG of one section's chart."""
    if chart.kind == "line":
        return charts.lines(
            chart.title,
            chart.times,
            chart.series,
            unit=chart.unit,
            percent=chart.percent,
            labels=chart.labels or None,
        )
    return charts.bars(
        chart.title,
        chart.labels,
        chart.series,
        horizontal=chart.kind in ("hbar", "hstack"),
        stacked=chart.kind in ("stack", "hstack"),
        percent=chart.percent,
    )


def _table(section: Section) -> str:
    head = "".join(f"<th>{_e(name)}</th>" for name, _ in section.columns)
    body = "".join(
        "<tr>"
        + "".join(
            f"<td>{_e(cell_text(v, kind))}</td>"
            for v, (_, kind) in zip(row, section.columns, strict=True)
        )
        + "</tr>"
        for row in section.rows
    )
    table = (
        f'<div class="scroll"><table><thead><tr>{head}</tr></thead>'
        f"<tbody>{body}</tbody></table></div>"
    )
    if len(section.rows) > 25:  # a long timeline: the chart says it, the table is there
        return f"<details><summary>{len(section.rows)} rows</summary>{table}</details>"
    return table


def _section(section: Section) -> str:
    parts = [f'<section id="{_e(section.key)}"><h2>{_e(section.title)}</h2>']
    if section.chart is not None:
        parts.append(f'<figure class="chart">{chart_svg(section.chart)}</figure>')
    if section.note:
        parts.append(f'<p class="note">{_e(section.note)}</p>')
    if section.rows:
        parts.append(_table(section))
    parts.append("</section>")
    return "".join(parts)


def page(
    title: str,
    meta: Sequence[str],
    sections: Sequence[Section],
    *,
    flags: Sequence[tuple[str, str]] = (),
    notes: Sequence[str] = (),
    generated_at: float | None = None,
) -> str:
    """The whole page. ``flags``: (level, text); ``meta``: lines under the title."""
    out: list[Any] = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        # nothing may load from anywhere: a report is often opened from a mail
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
        "style-src 'unsafe-inline'; img-src data:\">",
        f"<title>{_e(title)}</title><style>{CSS}</style></head><body>",
        f"<h1>{_e(title)}</h1>",
    ]
    out.extend(f'<div class="meta">{_e(line)}</div>' for line in meta)
    out.extend(f'<div class="flag {_e(level)}">{_e(text)}</div>' for level, text in flags)
    out.extend(f'<p class="note">{_e(text)}</p>' for text in notes)
    out.extend(_section(s) for s in sections)
    out.append(
        f'<p class="meta">made by stamp {_e(__version__)} on {_e(when(generated_at))} UTC</p>'
        "</body></html>"
    )
    return "\n".join(out)
