"""report.json -> report.html for people: verdicts first, then tables and up to three charts per experiment.

The page is one self-contained file (inline SVG written by `charts.py`, no scripts, no network), so
it opens from S3, a mail attachment or the lake alike. The template is
`include/templates/ab_report.html.j2`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from jinja2 import Environment, FileSystemLoader, select_autoescape

from jobs.ab import charts
from jobs.common import config


def thinned(values: Sequence[Any], at_most: int) -> list[Any]:
    """Every k-th value from the first, k the smallest step that leaves at most `at_most` labels on an axis."""
    return list(values[::max(1, math.ceil(len(values) / at_most))])


def lift_plot(history: pd.DataFrame, experiment_id: str) -> str | None:
    """Cumulative relative lift of the primary metric, night by night, with its confidence band; None before the
    second night (one point is not a trend: the page says so in a sentence instead)."""
    rows = history[(history["experiment_id"] == experiment_id) & (history["role"] == "primary")]
    rows = rows.dropna(subset=["relative_lift"]).sort_values("report_date")
    if rows["report_date"].nunique() < 2:
        return None
    days = pd.to_datetime(rows["report_date"])
    first = days.min()
    offset = (days - first).dt.days.to_numpy(float)
    ticks = [(d, f"{first + pd.Timedelta(days=d):%b %d}") for d in thinned(range(int(offset.max()) + 1), 8)]
    series = []
    for variant, group in rows.assign(offset=offset).groupby("variant"):
        series.append(charts.Series(str(variant), group["offset"].tolist(), (group["relative_lift"] * 100).tolist(),
                                    (group["relative_ci_low"] * 100).tolist(),
                                    (group["relative_ci_high"] * 100).tolist()))
    return charts.line_chart(series, f"{rows['metric'].iloc[0]}: cumulative lift by report date",
                             y_label="relative lift, %", x_ticks=ticks)


def novelty_plot(novelty: dict[str, Any]) -> str | None:
    """Relative lift of the primary metric per day since first exposure, one line per treatment arm, with the
    trend's slope in the legend (a falling line is a novelty effect fading)."""
    points = pd.DataFrame(novelty.get("points") or [])
    if points.empty or points["day"].nunique() < 2:
        return None
    slopes = {t["variant"]: t for t in novelty.get("trend", [])}
    series = []
    for variant, group in points.sort_values("day").groupby("variant"):
        trend = slopes.get(variant, {})
        slope = (f", trend {trend['slope_per_day'] * 100:+.2f} pts/day (p = {p_value(trend['p_value'])})"
                 if trend.get("status") in ("ok", "flagged") else "")
        series.append(charts.Series(f"{variant}{slope}", group["day"].astype(float).tolist(),
                                    (group["relative_lift"] * 100).tolist()))
    return charts.line_chart(series, f"{novelty['metric']}: lift by exposure age (novelty check)",
                             y_label="relative lift, %", x_label="days since first exposure",
                             x_ticks=[(float(d), str(d)) for d in thinned(sorted(points["day"].unique()), 10)])


def posterior_plot(bayes: dict[str, Any]) -> str | None:
    """Posterior densities of each arm's primary metric (normal curves from the 95% credible intervals)."""
    if bayes.get("status") != "ok":
        return None
    arms = [(a["variant"], a["posterior_mean"], (a["credible_interval_95"][1] - a["credible_interval_95"][0]) / 3.92)
            for a in bayes["arms"]]
    arms = [(v, m, sd) for v, m, sd in arms if sd > 0]
    if not arms:
        return None
    grid = np.linspace(min(m - 4 * sd for _, m, sd in arms), max(m + 4 * sd for _, m, sd in arms), 120)
    series = [charts.Series(str(v), grid.tolist(), (np.exp(-0.5 * ((grid - m) / sd) ** 2) / sd).tolist(),
                            markers=False) for v, m, sd in arms]
    return charts.line_chart(series, f"posterior of {bayes['metric']} per arm", zero_line=False,
                             show_y_ticks=False)


_SUPERSCRIPT = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")


def _power_of_ten(value: float, digits: int) -> str:
    """1.2 × 10⁻⁷: a tiny or huge number that stays one token (no "e-07" to break a line at)."""
    mantissa, exponent = f"{value:.{digits - 1}e}".split("e")
    return f"{mantissa} × 10{str(int(exponent)).translate(_SUPERSCRIPT)}"


def significant(value: float, digits: int = 4) -> str:
    """A measured value to `digits` significant digits, with thousands separators and no exponent
    between 1e-4 and 1e9 (20,000 not 2e+04; 0.1234 not 1.234e-01)."""
    if value == 0 or not math.isfinite(value):
        return f"{value:g}"
    magnitude = math.floor(math.log10(abs(value)))
    if not -4 <= magnitude < 9:
        return _power_of_ten(value, digits)
    return f"{value:,.{max(digits - 1 - magnitude, 0)}f}"


def p_value(value: float) -> str:
    """3 significant digits; below 0.001 as a power of ten (readable, never wrapped)."""
    if value >= 0.001:
        return f"{value:.3g}" if value < 1 else "1"
    return "< 10⁻³⁰⁰" if value < 1e-300 else _power_of_ten(value, 2)


def probability(value: float) -> str:
    """A probability as a percentage; never rounded to a certainty it is not (99.996% is "> 99.9%")."""
    if value > 0.999:
        return "> 99.9%" if value < 1 else "100%"
    if value < 0.001:
        return "< 0.1%" if value > 0 else "0%"
    return f"{value * 100:.1f}%"


def _fmt(value: Any, kind: str = "num") -> str:
    """The template's `fmt` filter: num (significant digits), int (users), pct (a lift, signed), share (a loss or a
    margin, unsigned), p, prob."""
    if value is None:
        return "—"
    if kind == "int":
        return f"{value:,.0f}"
    if kind == "pct":
        return f"{value * 100:+.2f}%"
    if kind == "share":  # a loss of 0.002% is not "0.00%": small shares keep one significant digit
        return f"{value * 100:.2f}%" if value == 0 or value >= 1e-4 else f"{significant(value * 100, 1)}%"
    if kind == "p":
        return p_value(value)
    if kind == "prob":
        return probability(value)
    return significant(value)


def guardrail_note(guardrail: dict[str, Any]) -> str:
    """Beside "guardrail" in the metrics table: the verdict of that guardrail and, with a margin, its test."""
    margin = f" {guardrail['margin'] * 100:g}%" if guardrail.get("margin") else ""
    status = guardrail["status"]
    if status == "breached":
        return f" ⚠ breached{' beyond' + margin if margin else ''}"
    if status == "within_margin":
        return f" ✓ within{margin} (p {p_value(guardrail['p_value_within'])})"
    if status == "not_shown":
        return f" · not yet shown within{margin} (p {p_value(guardrail['p_value_within'])})"
    return ""


def report_html(report: dict[str, Any], history: pd.DataFrame) -> str:
    env = Environment(loader=FileSystemLoader(str(config.include_path("templates"))),
                      autoescape=select_autoescape(["html", "j2"]))
    env.filters["fmt"] = _fmt
    env.globals["guardrail_note"] = guardrail_note
    plots = {e["id"]: {"lift": lift_plot(history, e["id"]) if not history.empty else None,
                       "novelty": novelty_plot(e.get("novelty") or {}),
                       "posterior": posterior_plot(e.get("bayesian") or {})}
             for e in report["experiments"]}
    return env.get_template("ab_report.html.j2").render(report=report, plots=plots)
