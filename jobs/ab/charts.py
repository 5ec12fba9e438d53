"""Small inline SVG line charts for the A/B report, written directly (a few hundred bytes and ~1 ms each).

matplotlib drew them before at ~70 ms and ~30 kB per plot, most of a 200-experiment report's time and size;
the report needs lines, a confidence band, a zero line, axis ticks (chosen by matplotlib's own `MaxNLocator`,
which needs no figure) and a legend, which this writes as SVG elements.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

from matplotlib.ticker import MaxNLocator

#: matplotlib's default colour cycle (tab10), so the charts look like the ones readers know
COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f")
WIDTH, HEIGHT = 520, 210
LEFT, RIGHT, TOP, BOTTOM = 52, 12, 24, 34


@dataclass(frozen=True)
class Series:
    label: str
    x: Sequence[float]
    y: Sequence[float]
    low: Sequence[float] | None = None  # a band around y (a confidence interval), optional
    high: Sequence[float] | None = None
    markers: bool = True


def _ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    return [t for t in MaxNLocator(nbins=count).tick_values(lo, hi) if lo - 1e-12 <= t <= hi + 1e-12]


def _label(value: float) -> str:
    return f"{value:,.6g}"


def line_chart(series: Sequence[Series], title: str, y_label: str = "", x_label: str = "",
               x_ticks: Sequence[tuple[float, str]] | None = None, zero_line: bool = True,
               show_y_ticks: bool = True) -> str:
    """An SVG chart of `series`; `x_ticks` (position, text) replace numeric x ticks (e.g. dates)."""
    xs = [v for s in series for v in s.x]
    ys = [v for s in series for v in (*s.y, *(s.low or ()), *(s.high or ())) if math.isfinite(v)]
    if zero_line:
        ys.append(0.0)
    x_lo, x_hi = min(xs), max(xs)
    if x_lo == x_hi:
        x_lo, x_hi = x_lo - 0.5, x_hi + 0.5
    pad_x = (x_hi - x_lo) * 0.04
    x_lo, x_hi = x_lo - pad_x, x_hi + pad_x
    y_lo, y_hi = min(ys), max(ys)
    pad_y = (y_hi - y_lo) * 0.08 or abs(y_hi) * 0.1 or 1.0
    y_lo, y_hi = y_lo - pad_y, y_hi + pad_y
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def px(x: float) -> float:
        return LEFT + (x - x_lo) / (x_hi - x_lo) * plot_w

    def py(y: float) -> float:
        return TOP + (y_hi - y) / (y_hi - y_lo) * plot_h

    total_height = HEIGHT + 14 * len(series) + 4
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {total_height}" width="{WIDTH}" '
           f'height="{total_height}" font-family="sans-serif" font-size="10" role="img" aria-label="{escape(title)}">',
           f'<text x="{WIDTH / 2:.0f}" y="14" text-anchor="middle" font-size="11">{escape(title)}</text>',
           f'<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#999"/>']
    if show_y_ticks:
        for t in _ticks(y_lo, y_hi):
            out.append(f'<line x1="{LEFT - 4}" x2="{LEFT}" y1="{py(t):.1f}" y2="{py(t):.1f}" stroke="#999"/>'
                       f'<text x="{LEFT - 6}" y="{py(t) + 3:.1f}" text-anchor="end">{_label(t)}</text>')
    for position, text in x_ticks if x_ticks is not None else [(t, _label(t)) for t in _ticks(x_lo, x_hi, 8)]:
        out.append(f'<line x1="{px(position):.1f}" x2="{px(position):.1f}" y1="{TOP + plot_h}" '
                   f'y2="{TOP + plot_h + 4}" stroke="#999"/><text x="{px(position):.1f}" y="{TOP + plot_h + 15}" '
                   f'text-anchor="middle">{escape(text)}</text>')
    if zero_line and y_lo < 0 < y_hi:
        out.append(f'<line x1="{LEFT}" x2="{LEFT + plot_w}" y1="{py(0):.1f}" y2="{py(0):.1f}" stroke="#888" '
                   'stroke-width="0.8"/>')
    if y_label:
        out.append(f'<text transform="translate(12 {TOP + plot_h / 2:.0f}) rotate(-90)" text-anchor="middle">'
                   f'{escape(y_label)}</text>')
    if x_label:
        out.append(f'<text x="{LEFT + plot_w / 2:.0f}" y="{HEIGHT - 4}" text-anchor="middle">{escape(x_label)}</text>')
    legend = []
    for n, s in enumerate(series):
        colour = COLOURS[n % len(COLOURS)]
        if s.low is not None and s.high is not None:
            upper = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in zip(s.x, s.high, strict=True))
            lower = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in zip(reversed(s.x), reversed(s.low), strict=True))
            out.append(f'<polygon points="{upper} {lower}" fill="{colour}" fill-opacity="0.18" stroke="none"/>')
        points = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in zip(s.x, s.y, strict=True))
        out.append(f'<polyline points="{points}" fill="none" stroke="{colour}" stroke-width="1.6"/>')
        if s.markers:
            out.extend(f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="2.6" fill="{colour}"/>'
                       for x, y in zip(s.x, s.y, strict=True))
        legend_y = HEIGHT + 12 + 14 * n  # under the chart: a legend inside would hide lines
        legend.append(f'<line x1="{LEFT}" x2="{LEFT + 14}" y1="{legend_y - 3}" y2="{legend_y - 3}" '
                      f'stroke="{colour}" stroke-width="2"/>'
                      f'<text x="{LEFT + 18}" y="{legend_y}">{escape(s.label)}</text>')
    return "".join([*out, *legend, "</svg>"])
