"""Where the A/B results live in the lake, and how a night's results are published.

    gold/ab/counts/dt=D/counts.parquet, diagnostics.parquet   the Spark aggregation (interchange format)
    gold/ab/history/dt=D/history.parquet                      one row per experiment x metric x arm
    reports/ab/dt=D/report.json, report.html, _manifest.json  what people read

Each directory is written aside and swapped in (`LakeFS.publish`), the report last, so a
crash leaves the previous night's outputs, never half of tonight's. A run for a subset of
experiments replaces only their rows and entries and keeps the others of that date.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import uuid
from typing import Any

import pandas as pd

from jobs.ab import render
from jobs.common import config, storage
from jobs.common.paths import Lake

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


def merge_subset(lake: Lake, day: dt.date, report: dict[str, Any], counts: pd.DataFrame,
                 diag: pd.DataFrame) -> tuple[dict[str, Any], pd.DataFrame, pd.DataFrame]:
    """For a run on some experiments: tonight's published rows of the other experiments stay."""
    ids = {e["id"] for e in report["experiments"]}
    reports_dir, counts_dir = lake.partition("reports", "ab", day), lake.partition("gold", "ab/counts", day)
    try:
        old = json.loads(storage.read_bytes(f"{reports_dir}/report.json"))
        others = [e for e in old["experiments"] if e["id"] not in ids]
        report = {**report, "experiments": sorted(others + report["experiments"], key=lambda e: e["id"])}
    except FileNotFoundError:
        pass
    counts = _keep_others(_read_parquet(f"{counts_dir}/counts.parquet", list(counts.columns)), counts, ids)
    diag = _keep_others(_read_parquet(f"{counts_dir}/diagnostics.parquet", list(diag.columns)), diag, ids)
    return report, counts, diag


def publish(lake: Lake, day: dt.date, report: dict[str, Any], counts: pd.DataFrame, diag: pd.DataFrame,
            history: pd.DataFrame, only: list[str] | None, lake_fs: Any,
            seconds: dict[str, float] | None = None) -> dict[str, Any]:
    """Write counts, history and the report aside, then swap each in (report last). Returns a summary."""
    if only:
        report, counts, diag = merge_subset(lake, day, report, counts, diag)
    tonight = history_rows(report)
    run_id = f"{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"
    past = history[history["report_date"] < day.isoformat()] if not history.empty else history
    html = render.report_html(report, pd.concat([past, tonight], ignore_index=True) if not past.empty else tonight)
    targets = {
        ("gold", "ab/counts"): {"counts.parquet": _parquet(counts), "diagnostics.parquet": _parquet(diag)},
        ("gold", "ab/history"): {"history.parquet": _parquet(tonight)},
        ("reports", "ab"): {"report.json": json.dumps(report, indent=2).encode(), "report.html": html.encode()},
    }
    manifest = {"report_date": day.isoformat(), "run_id": run_id, "job": "ab_report",
                "code_version": config.code_version(), "experiments": [e["id"] for e in report["experiments"]],
                "recomputed": only or "all", "rows": {"counts": len(counts), "history": len(tonight)},
                "seconds": seconds, "schema_version": report["schema_version"]}
    published = {}
    for (zone, table), files in targets.items():
        staging = lake.staging(zone, table, day, run_id)
        for name, data in {**files, "_manifest.json": json.dumps(manifest, indent=2).encode()}.items():
            storage.write_atomic(f"{staging}/{name}", data)
        final = lake.partition(zone, table, day)
        lake_fs.publish(staging, final)
        published[f"{zone}/{table}"] = final
    return {"status": "published", "report_date": day.isoformat(), "run_id": run_id, "outputs": published,
            "verdicts": {e["id"]: e["verdict"]["decision"] for e in report["experiments"]}}
