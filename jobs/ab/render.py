"""report.json -> report.html for people: verdicts first, then tables and two plots per experiment.

The page is one self-contained file (inline SVG from matplotlib, no scripts, no network), so
it opens from S3, a mail attachment or the lake alike. The template is
`include/templates/ab_report.html.j2`.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pandas as pd
from jinja2 import Environment, FileSystemLoader, select_autoescape

from jobs.common import config


def _pyplot() -> Any:
    """matplotlib's pyplot on the file-only Agg backend (imported late: it is slow to load)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _svg(fig: Any) -> str:
    plt = _pyplot()
    buffer = io.StringIO()
    fig.savefig(buffer, format="svg", bbox_inches="tight")
    plt.close(fig)
    text = buffer.getvalue()
    return text[text.index("<svg"):]


def lift_plot(history: pd.DataFrame, experiment_id: str) -> str | None:
    """Cumulative relative lift of the primary metric, night by night, with its confidence band."""
    rows = history[(history["experiment_id"] == experiment_id) & (history["role"] == "primary")]
    rows = rows.dropna(subset=["relative_lift"]).sort_values("report_date")
    if rows.empty:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 2.6))
    for variant, group in rows.groupby("variant"):
        dates = pd.to_datetime(group["report_date"])
        ax.plot(dates, group["relative_lift"] * 100, marker="o", label=variant)
        ax.fill_between(dates, group["relative_ci_low"] * 100, group["relative_ci_high"] * 100, alpha=0.2)
    ax.axhline(0, color="grey", linewidth=0.8)
    ax.set_ylabel("relative lift, %")
    ax.set_title(f"{rows['metric'].iloc[0]}: cumulative lift by report date", fontsize=9)
    ax.legend(fontsize=8)
    fig.autofmt_xdate()
    return _svg(fig)


def posterior_plot(bayes: dict[str, Any]) -> str | None:
    """Posterior densities of each arm's primary metric (normal curves from the 95% credible intervals)."""
    if bayes.get("status") != "ok":
        return None
    plt = _pyplot()
    from scipy import stats as sps

    arms = [(a["variant"], a["posterior_mean"], (a["credible_interval_95"][1] - a["credible_interval_95"][0]) / 3.92)
            for a in bayes["arms"]]
    lo = min(m - 4 * s for _, m, s in arms)
    hi = max(m + 4 * s for _, m, s in arms)
    grid = np.linspace(lo, hi, 400)
    fig, ax = plt.subplots(figsize=(6, 2.6))
    for variant, mean, sd in arms:
        if sd > 0:
            ax.plot(grid, sps.norm.pdf(grid, mean, sd), label=variant)
    ax.set_title(f"posterior of {bayes['metric']} per arm", fontsize=9)
    ax.set_yticks([])
    ax.legend(fontsize=8)
    return _svg(fig)


def _fmt(value: Any, kind: str = "num") -> str:
    if value is None:
        return "—"
    if kind == "pct":
        return f"{value * 100:+.2f}%"
    if kind == "p":
        return f"{value:.3g}"
    return f"{value:,.4g}"


def report_html(report: dict[str, Any], history: pd.DataFrame) -> str:
    env = Environment(loader=FileSystemLoader(str(config.include_path("templates"))),
                      autoescape=select_autoescape(["html", "j2"]))
    env.filters["fmt"] = _fmt
    plots = {e["id"]: {"lift": lift_plot(history, e["id"]) if not history.empty else None,
                       "posterior": posterior_plot(e.get("bayesian") or {})}
             for e in report["experiments"]}
    return env.get_template("ab_report.html.j2").render(report=report, plots=plots)
