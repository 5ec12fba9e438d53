"""bronze/clickstream -> the night's A/B report: Spark aggregates (`aggregation.py`), the driver tests.

Reads the validated clickstream once for the window the registered experiments need, reduces
it to sums per experiment x variant x metric in Spark, builds the report with `analysis.py`
(no Spark) and publishes: the night's rows of the Iceberg tables `lake.gold.ab_counts`, `ab_diagnostics` and
`ab_history` (one row per experiment x metric x arm, for trends across nights), one commit each, then
`reports/ab/dt=D/report.{json,html}` swapped in. A run for some experiments recomputes those and keeps
the others of that date.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pandas as pd
from pyspark.sql import SparkSession

from jobs.ab import STAGE, analysis, outputs
from jobs.ab.aggregation import aggregate
from jobs.ab.counts import COLUMNS, empty_diagnostics
from jobs.ab.registry import Registry
from jobs.common import config
from jobs.common.paths import Lake
from jobs.common.run import Run
from jobs.common.runner import new_run_id
from jobs.common.spark import LakeFS, read_clickstream

JOB = "ab_report"


def run(spark: SparkSession, lake: Lake, day: dt.date, reg: Registry, only: list[str] | None = None,
        run_id: str | None = None) -> dict[str, Any]:
    with Run(JOB, lake, day, run_id or new_run_id(), group=f"{STAGE}/dt={day}", fs=LakeFS(spark)) as this:
        return _run(spark, this, reg, only)


def _run(spark: SparkSession, this: Run, reg: Registry, only: list[str] | None) -> dict[str, Any]:
    lake, day = this.lake, this.day
    running = [e for e in reg.experiments if e.valid and e.status_on(day) != "not_started"]
    wanted = {e.id for e in reg.select(only)}
    active = [e for e in running if e.id in wanted]
    counts, diag, missing = pd.DataFrame(columns=COLUMNS), empty_diagnostics(), []
    if active:
        first = min(e.start_date for e in running) - dt.timedelta(days=reg.settings.cuped_lookback_days)
        last = max(e.analysis_end(day) for e in running)
        events, missing = read_clickstream(spark, lake, first, last)
        counts, diag = aggregate(events, reg, active, day, running)
    aggregated = this.elapsed()
    history, history_snapshot = outputs.read_history(spark, lake)
    report = analysis.build_report(counts, reg, day, only, diag, history, config.code_version())
    for entry in report["experiments"]:
        gaps = [d for d in missing if entry.get("start_date") and d >= entry["start_date"]
                and d <= entry.get("window", {}).get("analysed_to", "")]
        if gaps:
            entry["warnings"].append(f"bronze clickstream missing for {', '.join(gaps)}: those days are not counted")
    seconds = {"aggregation": aggregated, "statistics": round(this.elapsed() - aggregated, 2)}
    return outputs.publish(spark, this, outputs.Night(report, counts, diag), history, only, seconds,
                           tables_read={outputs.HISTORY.qualified: history_snapshot})
