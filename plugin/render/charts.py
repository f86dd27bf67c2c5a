"""Charts as inline SVG, drawn on the server: no script, no CDN (hospital networks block them).
Each chart has a title and a description for screen readers; the page shows the same figures
in a table beside it."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

# Colours by line status (the pages' own: billable green, held amber, not billable grey)
STATUS_COLOURS = {"billable": "#2e7d32", "planned": "#c77700", "not-billable": "#9e9e9e"}
BAR = "#17324d"
FLAG = "#b71c1c"


def _svg(width: int, height: int, title: str, body: list[str]) -> str:
    label = escape(title)
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" aria-label="{label}" '
        f'width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        f'font-family="system-ui, sans-serif" font-size="12">'
        f"<title>{label}</title>{''.join(body)}</svg>"
    )


def stacked_columns(
    title: str,
    columns: Sequence[tuple[str, dict[str, int]]],
    series: dict[str, str],
    words: dict[str, str],
) -> str:
    """One column per label (a date), stacked by series (a status), with a legend."""
    width, height, left, bottom, top = max(440, 70 + 44 * len(columns)), 260, 40, 40, 30
    peak = max((sum(parts.values()) for _, parts in columns), default=0) or 1
    scale = (height - bottom - top) / peak
    body = [
        f'<line x1="{left}" y1="{height - bottom}" x2="{width - 10}" y2="{height - bottom}" '
        'stroke="#555"/>',
        f'<text x="{left - 6}" y="{top + 4}" text-anchor="end">{peak}</text>',
        f'<text x="{left - 6}" y="{height - bottom}" text-anchor="end">0</text>',
    ]
    for index, (label, parts) in enumerate(columns):
        x = left + 10 + index * 44
        y: float = height - bottom
        for name, colour in series.items():
            count = parts.get(name, 0)
            if not count:
                continue
            h = count * scale
            y -= h
            tip = escape(f"{label}: {count} {words.get(name, name)}")
            body.append(
                f'<rect x="{x}" y="{y:.1f}" width="30" height="{h:.1f}" fill="{colour}">'
                f"<title>{tip}</title></rect>"
            )
        body.append(
            f'<text x="{x + 15}" y="{height - bottom + 14}" text-anchor="middle">'
            f"{escape(label[5:] if len(label) == 10 else label)}</text>"
        )
    for index, (name, colour) in enumerate(series.items()):
        x = left + index * 120
        body.append(f'<rect x="{x}" y="6" width="12" height="12" fill="{colour}"/>')
        body.append(f'<text x="{x + 16}" y="16">{escape(words.get(name, name))}</text>')
    return _svg(width, height, title, body)


def bars(
    title: str,
    rows: Sequence[tuple[str, float]],
    unit: str = "",
    marker: float | None = None,
    flag_below: float | None = None,
) -> str:
    """Horizontal bars, one per row, the value written at the end; a dashed marker line (for
    example the 15 minutes per unit CMS expects) and rows under `flag_below` in red."""
    width, row_height, left, right = 680, 24, 210, 110
    # a marker's caption gets a row of its own below the bars, so it runs through no label
    height = 30 + row_height * max(1, len(rows)) + (row_height if marker is not None else 0)
    peak = max([v for _, v in rows] + ([marker] if marker else []), default=0) or 1
    scale = (width - left - right) / peak
    body = []
    if marker is not None:  # drawn first: the bars and their values lie over it
        x = left + marker * scale
        bottom = height - row_height
        body.append(
            f'<line x1="{x:.1f}" y1="4" x2="{x:.1f}" y2="{bottom}" stroke="{FLAG}" '
            'stroke-dasharray="4 3"/>'
        )
        body.append(
            f'<text x="{x:.1f}" y="{height - 8}" fill="{FLAG}" text-anchor="middle">'
            f"{marker:g} {escape(unit)} expected</text>"
        )
    for index, (label, value) in enumerate(rows):
        y = 10 + index * row_height
        colour = FLAG if flag_below is not None and value < flag_below else BAR
        shown = (
            f"{value:.1f}" if isinstance(value, float) and not value.is_integer() else f"{value:g}"
        )
        body.append(
            f'<text x="{left - 8}" y="{y + 14}" text-anchor="end">{escape(label[:32])}</text>'
        )
        body.append(
            f'<rect x="{left}" y="{y}" width="{max(1.0, value * scale):.1f}" height="18" '
            f'fill="{colour}"><title>{escape(f"{label}: {shown} {unit}".strip())}</title></rect>'
        )
        said = unit[:-1] if value == 1 and unit.endswith("s") else unit  # "1 unit"
        # the value on a white halo: a marker line behind it does not cross the figures
        body.append(
            f'<text x="{left + value * scale + 6:.1f}" y="{y + 14}" stroke="#fff" '
            f'stroke-width="4" paint-order="stroke">{escape(shown)} {escape(said)}</text>'
        )
    if not rows:
        body.append(f'<text x="{left}" y="24">nothing in this period</text>')
    return _svg(width, height, title, body)
