"""Where the A/B results live in the lake, and how a night's results are published.

    lake.gold.ab_counts, lake.gold.ab_diagnostics   Iceberg tables by report_date: the Spark aggregation
                                                    (the counts interchange format, `jobs/ab/counts.py`)
    lake.gold.ab_history                            Iceberg table by report_date: one row per experiment x
                                                    metric x arm, for the trend charts and the always-valid p
    reports/ab/dt=D/report.json, report.html, _manifest.json  what people read (files)

Each table's night is replaced in one Iceberg commit (`tables.replace_where`), then the report files are swapped
in (`Run.publish`), so a reader never sees half of a night. A crash between the commits leaves some tables with
tonight's rows beside last night's report until the retry replaces them again (a rerun gives the same rows). A run
for a subset of experiments replaces only their rows and entries and keeps the others of that date.
"""

from __future__ import annotations

import datetime as dt
import io
import json
from dataclasses import dataclass
from typing import Any

import pandas as pd
from pyspark.sql import SparkSession

from jobs.ab import STAGE, render
from jobs.ab.counts import COLUMNS, DIAGNOSTIC_COLUMNS, KEYS
from jobs.common import storage, tables
from jobs.common.paths import Lake
from jobs.common.run import Output, Run

HISTORY_COLUMNS = [
    "report_date", "experiment_id", "metric", "role", "variant", "users_control", "users_treatment",
    "control_mean", "treatment_mean", "absolute_lift", "absolute_ci_low", "absolute_ci_high", "relative_lift",
    "relative_ci_low", "relative_ci_high", "ci_level", "p_value", "p_value_adjusted", "seq_p_value",
    "seq_ci_low", "seq_ci_high", "srm_p_value", "decision",
]


TEXT_HISTORY_COLUMNS = ("report_date", "experiment_id", "metric", "role", "variant", "decision")


def _columns(names: list[str], text: tuple[str, ...] | list[str]) -> str:
    """Spark DDL of the night's date and the `names` columns: the `text` ones strings, the rest numbers."""
    return ", ".join(["report_date DATE", *(f"`{n}` {'STRING' if n in text else 'DOUBLE'}"
                                           for n in names if n != "report_date")])


COUNTS = tables.TableSpec("gold", "ab_counts", _columns(COLUMNS, KEYS), ("report_date",))
DIAGNOSTICS = tables.TableSpec("gold", "ab_diagnostics", _columns(DIAGNOSTIC_COLUMNS, ["experiment_id", "kind",
                                                                                       "other"]), ("report_date",))
HISTORY = tables.TableSpec("gold", "ab_history", _columns(HISTORY_COLUMNS, TEXT_HISTORY_COLUMNS), ("report_date",))


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
    numeric = [c for c in HISTORY_COLUMNS if c not in TEXT_HISTORY_COLUMNS]
    frame[numeric] = frame[numeric].astype(float)
    return frame


def _read(spark: SparkSession, name: str, columns: list[str], day: dt.date | None = None,
          snapshot: int | None = None) -> pd.DataFrame:
    """Table `name`'s rows as pandas (all nights, or `day`'s without its date; at `snapshot`, else the current one),
    `report_date` as `YYYY-MM-DD` text."""
    table = spark.read.option("versionAsOf", snapshot).table(name) if snapshot else spark.table(name)
    if day is not None:
        table = table.where(tables.on_day("report_date", day)).drop("report_date")
    frame = table.toPandas()
    if "report_date" in frame.columns:
        frame["report_date"] = frame["report_date"].map(lambda d: d.isoformat())
    return frame.reindex(columns=columns)


def read_history(spark: SparkSession, lake: Lake) -> tuple[pd.DataFrame, int | None]:
    """Every published night's history rows (small: experiments x metrics x arms x nights), read at the table's
    current snapshot, and that snapshot's id (None: no night yet), for the run's record of what it read."""
    name = tables.ensure(spark, lake, HISTORY)
    snapshot = tables.current_snapshot(spark, name)
    return _read(spark, name, HISTORY_COLUMNS, snapshot=snapshot), snapshot


def _replace_night(spark: SparkSession, lake: Lake, day: dt.date, run_id: str, spec: tables.TableSpec,
                   frame: pd.DataFrame) -> int:
    """`frame` becomes the table's rows of the night, in one commit; the snapshot id."""
    table = tables.ensure(spark, lake, spec)
    schema = spark.table(table).schema
    rows = frame.assign(report_date=day).reindex(columns=schema.names)
    numeric = [f.name for f in schema.fields if f.dataType.typeName() == "double"]
    values = rows[numeric].astype(float)
    rows[numeric] = values.astype(object).where(values.notna(), None)  # no value is null, not NaN, for every reader
    written = spark.createDataFrame(rows, schema=schema)
    return tables.replace_where(written, table, tables.on_day("report_date", day), run_id)


def _keep_others(existing: pd.DataFrame, new: pd.DataFrame, ids: set[str]) -> pd.DataFrame:
    frames = [f for f in (existing[~existing["experiment_id"].isin(ids)], new) if not f.empty]
    return pd.concat(frames, ignore_index=True) if frames else new


@dataclass
class Night:
    """A night's A/B results before they are published: the report and the frames it was built from."""

    report: dict[str, Any]
    counts: pd.DataFrame
    diagnostics: pd.DataFrame


def merge_subset(spark: SparkSession, lake: Lake, day: dt.date, night: Night) -> Night:
    """For a run on some experiments: tonight's published rows of the other experiments stay."""
    ids = {e["id"] for e in night.report["experiments"]}
    try:
        old = json.loads(storage.read_bytes(lake.report_file(STAGE, day, "report.json")))
        others = [e for e in old["experiments"] if e["id"] not in ids]
        report = {**night.report, "experiments": sorted(others + night.report["experiments"], key=lambda e: e["id"])}
    except FileNotFoundError:
        report = night.report
    counts = _keep_others(_read(spark, tables.ensure(spark, lake, COUNTS), COLUMNS, day), night.counts, ids)
    diag = _keep_others(_read(spark, tables.ensure(spark, lake, DIAGNOSTICS), DIAGNOSTIC_COLUMNS, day),
                        night.diagnostics, ids)
    return Night(report, counts, diag)


def publish(spark: SparkSession, this: Run, night: Night, history: pd.DataFrame, only: list[str] | None,
            seconds: dict[str, float] | None = None, tables_read: dict[str, int | None] | None = None
            ) -> dict[str, Any]:
    """Replace the night's rows of counts, diagnostics and history (one commit each), then swap the report files
    in. Returns a summary, with the snapshot id each table commit made.

    `history`: the earlier nights' history rows, for the report's trend charts."""
    lake, day = this.lake, this.day
    if only:
        night = merge_subset(spark, lake, day, night)
    tonight = history_rows(night.report)
    past = history[history["report_date"] < day.isoformat()] if not history.empty else history
    html = render.report_html(night.report, pd.concat([past, tonight], ignore_index=True) if not past.empty
                              else tonight)
    snapshots = {spec.qualified: _replace_night(spark, lake, day, this.run_id, spec, frame)
                 for spec, frame in ((COUNTS, night.counts), (DIAGNOSTICS, night.diagnostics), (HISTORY, tonight))}
    manifest = {**this.header(), "report_date": day.isoformat(),
                "experiments": [e["id"] for e in night.report["experiments"]],
                "recomputed": only or "all", "rows": {"counts": len(night.counts), "history": len(tonight)},
                "tables_read": tables_read or {}, "tables_written": snapshots, "seconds": seconds,
                "schema_version": night.report["schema_version"]}
    staging = this.staging("reports", STAGE)
    storage.write_atomic(f"{staging}/report.json",
                         json.dumps(night.report, separators=(",", ":"), allow_nan=False).encode())
    storage.write_atomic(f"{staging}/report.html", html.encode())
    report = Output(staging, lake.partition("reports", STAGE, day), manifest)
    this.publish([report])
    return {"status": "published", "report_date": day.isoformat(), "run_id": this.run_id,
            "outputs": {**{name: f"{name} report_date={day}" for name in snapshots}, f"reports/{STAGE}": report.final},
            "tables_written": snapshots,
            "verdicts": {e["id"]: e["verdict"]["decision"] for e in night.report["experiments"]}}


#: The previous release's layout (before the Iceberg tables): `gold/ab/<dir>/dt=D/<file>` beside a `_manifest.json`.
LEGACY = ((COUNTS, "counts", "counts.parquet", COLUMNS), (DIAGNOSTICS, "counts", "diagnostics.parquet",
                                                         DIAGNOSTIC_COLUMNS),
          (HISTORY, "history", "history.parquet", HISTORY_COLUMNS))


def migrate_legacy(spark: SparkSession, lake: Lake, run_id: str) -> dict[str, Any]:
    """Copy the nights a lake of the previous release kept as `gold/ab/{counts,history}/dt=D/*.parquet` into the
    Iceberg tables, one commit per night and table. A night the table already has (written since the upgrade, or
    by an earlier migration) is left as it is, so the migration can be rerun and never duplicates a row. The old
    directories stay until the operator deletes them (the report lists them)."""
    done: dict[str, Any] = {}
    for spec, folder, name, columns in LEGACY:
        table = tables.ensure(spark, lake, spec)
        have = {r[0] for r in spark.sql(f"SELECT DISTINCT report_date FROM {table}").collect()}
        copied, skipped, legacy = {}, [], []
        for partition in storage.children(lake.table("gold", f"ab/{folder}")):
            label = partition.rstrip("/").rsplit("/", 1)[-1]
            if not label.startswith("dt=") or not storage.exists(Lake.manifest(partition)):
                continue  # staging, trash, a partition never published
            day = dt.date.fromisoformat(label.removeprefix("dt="))
            legacy.append(partition)
            if day in have:
                skipped.append(day.isoformat())
                continue
            frame = pd.read_parquet(io.BytesIO(storage.read_bytes(f"{partition}/{name}")))
            if "report_date" in frame.columns:
                frame = frame.drop(columns="report_date")
            _replace_night(spark, lake, day, run_id, spec, frame.reindex(columns=columns))
            copied[day.isoformat()] = len(frame)
        done[spec.qualified] = {"nights_copied": copied, "nights_already_there": skipped, "legacy_dirs": legacy}
    return done
