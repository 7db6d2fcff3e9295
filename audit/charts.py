"""Server-rendered SVG charts: no script, readable without colour (values are labelled)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

from .reports.base import Chart, duration

PALETTE = ["#0b57d0", "#a4161a", "#0f6b2f", "#8a5300", "#7a0f56", "#4a5260"]


def _label(value: float | None, unit: str) -> str:
    if value is None:
        return "not enough data"
    if unit == "s":
        return duration(value)
    if unit == "%":
        return f"{value * 100:.0f}%"
    return f"{value:g}"


def render(chart: Chart) -> SafeString:
    if chart.kind == "lines":
        return _lines(chart)
    return _bars(chart)


def _legend(chart: Chart, x: int, y: int) -> list[str]:
    parts = []
    left = float(x)
    for index, name in enumerate(chart.series):
        colour = PALETTE[index % len(PALETTE)]
        parts.append(
            f'<rect x="{left:.0f}" y="{y - 9}" width="10" height="10" fill="{colour}"/>'
            f'<text x="{left + 14:.0f}" y="{y}">{escape(name)}</text>'
        )
        # Room for the name at about 6.5 px a character in the 11 px font, so that long
        # names do not run into the next entry.
        left += max(150.0, 30 + 6.5 * len(name))
    return parts


def _bars(chart: Chart) -> SafeString:
    """Grouped horizontal bars, one group per label, the value written at each bar's end."""
    names = list(chart.series)
    bar, gap, left, width = 11, 8, 130, 520
    group = bar * len(names) + gap
    height = 40 + group * max(1, len(chart.labels)) + 10
    peak = max((v for values in chart.series.values() for v in values if v is not None), default=0)
    scale = (width - 70) / peak if peak else 0
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" role="img" '
        f'viewBox="0 0 {left + width} {height}" width="{left + width}" height="{height}">',
        f"<title>{escape(chart.title)}</title>",
        f'<text x="0" y="14" font-weight="600">{escape(chart.title)}</text>',
        *_legend(chart, left, 32),
    ]
    for row, label in enumerate(chart.labels):
        top = 42 + row * group
        parts.append(
            f'<text x="{left - 6}" y="{top + bar}" text-anchor="end">{escape(label)}</text>'
        )
        for index, name in enumerate(names):
            value = chart.series[name][row]
            y = top + index * bar
            colour = PALETTE[index % len(PALETTE)]
            length = (value or 0) * scale
            parts.append(
                f'<rect x="{left}" y="{y}" width="{length:.1f}" height="{bar - 2}" '
                f'fill="{colour}"><title>{escape(name)}: {_label(value, chart.unit)}</title></rect>'
            )
            parts.append(
                f'<text x="{left + length + 4:.1f}" y="{y + bar - 3}">'
                f"{_label(value, chart.unit)}</text>"
            )
    parts.append("</svg>")
    return mark_safe("".join(parts))  # noqa: S308 every label above is escaped


@dataclass(frozen=True)
class _Plot:
    """Where a line chart's values land: categories across, values up from `low` to `high`."""

    left: int
    top: int
    width: int
    height: int
    low: float
    high: float
    count: int

    @classmethod
    def of(cls, chart: Chart) -> _Plot:
        values = [v for series in chart.series.values() for v in series if v is not None]
        if chart.unit == "%":
            low, high = 0.0, 1.0
        else:
            low, high = 0.0, max(values, default=0) or 1.0
        if chart.unit == "" and all(float(v).is_integer() for v in values):
            # Counts: a top that halves into a whole number, so that no tick reads 56.5.
            high = float(math.ceil(high / 2) * 2)
        return cls(50, 40, 600, 200, low, high, len(chart.labels))

    @property
    def bottom(self) -> int:
        return self.top + self.height

    def x(self, index: int) -> float:
        return self.left + index * (self.width / max(1, self.count - 1))

    def y(self, value: float) -> float:
        return self.top + self.height - (value - self.low) / (self.high - self.low) * self.height


def _lines(chart: Chart) -> SafeString:
    """Lines over categories; a percentage chart gets a 0–100% axis and the diagonal."""
    plot = _Plot.of(chart)
    left, top, width, height = plot.left, plot.top, plot.width, plot.height
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" role="img" '
        f'viewBox="0 0 {left + width + 40} {top + height + 40}" '
        f'width="{left + width + 40}" height="{top + height + 40}">',
        f"<title>{escape(chart.title)}</title>",
        f'<text x="0" y="14" font-weight="600">{escape(chart.title)}</text>',
        *_legend(chart, left, 30),
        *_axes(chart, plot),
        *_reference(chart, plot),
        *_categories(chart, plot),
    ]
    for number, (name, series) in enumerate(chart.series.items()):
        parts.extend(_series(chart, plot, name, series, PALETTE[number % len(PALETTE)]))
    parts.append("</svg>")
    return mark_safe("".join(parts))  # noqa: S308 every label above is escaped


def _axes(chart: Chart, plot: _Plot) -> list[str]:
    """Both axes, the value axis labelled at its bottom, middle and top."""
    parts = [
        f'<line x1="{plot.left}" y1="{plot.bottom}" x2="{plot.left + plot.width}" '
        f'y2="{plot.bottom}" stroke="#8893a3"/>',
        f'<line x1="{plot.left}" y1="{plot.top}" x2="{plot.left}" y2="{plot.bottom}" '
        'stroke="#8893a3"/>',
    ]
    for tick in (plot.low, (plot.low + plot.high) / 2, plot.high):
        parts.append(
            f'<text x="{plot.left - 6}" y="{plot.y(tick) + 4:.1f}" text-anchor="end">'
            f"{_label(tick, chart.unit)}</text>"
        )
    return parts


def _reference(chart: Chart, plot: _Plot) -> list[str]:
    if not (chart.reference and chart.unit == "%"):
        return []
    # What a perfectly calibrated agent would show: approval rate equal to its confidence.
    first = 0.55
    last = 0.95
    return [
        f'<line x1="{plot.x(0):.1f}" y1="{plot.y(first):.1f}" x2="{plot.x(plot.count - 1):.1f}" '
        f'y2="{plot.y(last):.1f}" stroke="#8893a3" stroke-dasharray="4 4">'
        "<title>perfect calibration</title></line>"
    ]


# Room a category label takes under the axis: a character at the charts' 11 px type (console.css,
# `svg text`) is at most about 6.5 px wide in the fonts the console names, and a gap between two.
CHAR_PX, LABEL_GAP_PX = 6.5, 10


def _categories(chart: Chart, plot: _Plot) -> list[str]:
    """The category labels under the axis: every n-th, so that the ones written never overlap,
    and at most a dozen of them."""
    widest = max((len(label) for label in chart.labels), default=1)
    need = widest * CHAR_PX + LABEL_GAP_PX
    # Categories apart that give a label its room: need / (width / spans), written so that a
    # step that fits exactly is not rounded up (75 px over 56 spans of 600 px is 7, not 8).
    spans = max(1, plot.count - 1)
    every = max(math.ceil(need * spans / plot.width), math.ceil(plot.count / 12), 1)
    return [
        f'<text x="{plot.x(index):.1f}" y="{plot.bottom + 16}" text-anchor="middle">'
        f"{escape(label)}</text>"
        for index, label in enumerate(chart.labels)
        if index % every == 0
    ]


def _series(
    chart: Chart, plot: _Plot, name: str, series: list[float | None], colour: str
) -> list[str]:
    """One series' line, and a labelled point per value when there are few enough to hover."""
    parts = []
    points = [(plot.x(i), plot.y(v)) for i, v in enumerate(series) if v is not None]
    if len(points) > 1:
        path = " ".join(f"{px:.1f},{py:.1f}" for px, py in points)
        parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{path}"/>')
    if plot.count <= 24:
        for i, v in enumerate(series):
            if v is not None:
                parts.append(
                    f'<circle cx="{plot.x(i):.1f}" cy="{plot.y(v):.1f}" r="3" fill="{colour}">'
                    f"<title>{escape(name)} {escape(chart.labels[i])}: "
                    f"{_label(v, chart.unit)}</title></circle>"
                )
    return parts
