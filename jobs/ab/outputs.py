"""Where the A/B results live in the lake, and how a night's results are published.

    gold/ab/counts/dt=D/counts.parquet, diagnostics.parquet   the Spark aggregation (interchange format)
    gold/ab/history/dt=D/history.parquet                      one row per experiment x metric x arm
    reports/ab/dt=D/report.json, report.html, _manifest.json  what people read

Each directory is written aside and swapped in (`Run.publish`), the report last, so a
crash leaves the previous night's outputs, never half of tonight's. A run for a subset of
experiments replaces only their rows and entries and keeps the others of that date.
"""

from __future__ import annotations

import datetime as dt
import io
import json
from dataclasses import dataclass
from typing import Any

import pandas as pd

from jobs.ab import STAGE, render
from jobs.common import storage
from jobs.common.paths import Lake
from jobs.common.run import Output, Run

HISTORY_COLUMNS = [
    "report_date", "experiment_id", "metric", "role", "variant", "users_control", "users_treatment",
    "control_mean", "treatment_mean", "absolute_lift", "absolute_ci_low", "absolute_ci_high", "relative_lift",
    "relative_ci_low", "relative_ci_high", "ci_level", "p_value", "p_value_adjusted", "seq_p_value",
    "seq_ci_low", "seq_ci_high", "srm_p_value", "decision",
]


def history_rows(report: dict[str, Any]) -> pd.DataFrame:
    """The report flattened to one row per experiment x metric x treatment arm."""
    rows = []
    for exp in report["experiments"]:
        for metric in exp.get("metrics", []):
            for c in metric["comparisons"]:
                absolute, relative, seq = c["absolute_ci"] or [None, None], c["relative_ci"] or [None, None], (
                    c["sequential"]["ci"] or [None, None])
                rows.append({
                    "report_date": report["report_date"], "experiment_id": exp["id"], "metric": metric["metric"],
                    "role": metric["role"], "variant": c["variant"], "users_control": c["users"]["control"],
                    "users_treatment": c["users"]["treatment"], "control_mean": c["control_mean"],
                    "treatment_mean": c["treatment_mean"], "absolute_lift": c["absolute_lift"],
                    "absolute_ci_low": absolute[0], "absolute_ci_high": absolute[1],
                    "relative_lift": c["relative_lift"], "relative_ci_low": relative[0],
                    "relative_ci_high": relative[1], "ci_level": c["ci_level"], "p_value": c["p_value"],
                    "p_value_adjusted": c["p_value_adjusted"], "seq_p_value": c["sequential"]["p_value"],
                    "seq_ci_low": seq[0], "seq_ci_high": seq[1], "srm_p_value": exp["srm"]["p_value"],
                    "decision": exp["verdict"]["decision"],
                })
    frame = pd.DataFrame(rows, columns=HISTORY_COLUMNS)
    numeric = [c for c in HISTORY_COLUMNS if c not in ("report_date", "experiment_id", "metric", "role", "variant",
                                                       "decision")]
    frame[numeric] = frame[numeric].astype(float)
    return frame


def read_history(lake: Lake) -> pd.DataFrame:
    """Every published night's history rows (small: experiments x metrics x arms x nights)."""
    files = storage.list_files(lake.table("gold", "ab/history"), ".parquet")
    files = [f for f in files if "/_" not in f.split("/gold/ab/history", 1)[-1]]
    if not files:
        return pd.DataFrame(columns=HISTORY_COLUMNS)
    return pd.concat([_read_parquet(f, HISTORY_COLUMNS) for f in files], ignore_index=True)


def _parquet(frame: pd.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    return buffer.getvalue()


def _read_parquet(uri: str, columns: list[str]) -> pd.DataFrame:
    try:
        return pd.read_parquet(io.BytesIO(storage.read_bytes(uri)))
    except FileNotFoundError:
        return pd.DataFrame(columns=columns)


def _keep_others(existing: pd.DataFrame, new: pd.DataFrame, ids: set[str]) -> pd.DataFrame:
    frames = [f for f in (existing[~existing["experiment_id"].isin(ids)], new) if not f.empty]
    return pd.concat(frames, ignore_index=True) if frames else new


@dataclass
class Night:
    """A night's A/B results before they are published: the report and the frames it was built from."""

    report: dict[str, Any]
    counts: pd.DataFrame
    diagnostics: pd.DataFrame


def merge_subset(lake: Lake, day: dt.date, night: Night) -> Night:
    """For a run on some experiments: tonight's published rows of the other experiments stay."""
    ids = {e["id"] for e in night.report["experiments"]}
    try:
        old = json.loads(storage.read_bytes(lake.report_file(STAGE, day, "report.json")))
        others = [e for e in old["experiments"] if e["id"] not in ids]
        report = {**night.report, "experiments": sorted(others + night.report["experiments"], key=lambda e: e["id"])}
    except FileNotFoundError:
        report = night.report
    counts_dir = lake.partition("gold", "ab/counts", day)
    counts = _keep_others(_read_parquet(f"{counts_dir}/counts.parquet", list(night.counts.columns)), night.counts, ids)
    diag = _keep_others(_read_parquet(f"{counts_dir}/diagnostics.parquet", list(night.diagnostics.columns)),
                        night.diagnostics, ids)
    return Night(report, counts, diag)


def publish(this: Run, night: Night, history: pd.DataFrame, only: list[str] | None,
            seconds: dict[str, float] | None = None) -> dict[str, Any]:
    """Write counts, history and the report aside, then swap each in (report last). Returns a summary.

    `history`: the earlier nights' history rows, for the report's trend charts."""
    lake, day = this.lake, this.day
    if only:
        night = merge_subset(lake, day, night)
    tonight = history_rows(night.report)
    past = history[history["report_date"] < day.isoformat()] if not history.empty else history
    html = render.report_html(night.report, pd.concat([past, tonight], ignore_index=True) if not past.empty
                              else tonight)
    targets = {
        ("gold", "ab/counts"): {"counts.parquet": _parquet(night.counts),
                                "diagnostics.parquet": _parquet(night.diagnostics)},
        ("gold", "ab/history"): {"history.parquet": _parquet(tonight)},
        ("reports", STAGE): {"report.json": json.dumps(night.report, separators=(",", ":"), allow_nan=False).encode(),
                             "report.html": html.encode()},
    }
    manifest = {**this.header(), "report_date": day.isoformat(),
                "experiments": [e["id"] for e in night.report["experiments"]],
                "recomputed": only or "all", "rows": {"counts": len(night.counts), "history": len(tonight)},
                "seconds": seconds, "schema_version": night.report["schema_version"]}
    outputs = {}
    for (zone, table), files in targets.items():
        staging = this.staging(zone, table)
        for name, data in files.items():
            storage.write_atomic(f"{staging}/{name}", data)
        outputs[f"{zone}/{table}"] = Output(staging, lake.partition(zone, table, day), manifest)
    this.publish(list(outputs.values()))
    return {"status": "published", "report_date": day.isoformat(), "run_id": this.run_id,
            "outputs": {name: output.final for name, output in outputs.items()},
            "verdicts": {e["id"]: e["verdict"]["decision"] for e in night.report["experiments"]}}
