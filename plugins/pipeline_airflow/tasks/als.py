"""The ALS stage's decisions and summary: whether tonight trains, what the run decided."""

from __future__ import annotations

import json
import logging
from typing import Any

from airflow.sdk import task

from jobs.als import STAGE
from pipeline_airflow.shared import LAKE, run_report

log = logging.getLogger(__name__)


@task.short_circuit(doc_md="""
Decide whether tonight trains ALS: the `als_force_retrain` param, no model yet, the last model
older than `cadence.every_days`, or the validated clickstream since it grew by
`cadence.min_new_events_ratio` of its data (`als.yaml`). Otherwise `als_train` and
`summarise_als` are skipped, with the reason in this task's log.
""")
def als_due(day: str, **context: Any) -> bool:
    from jobs.als import registry, settings
    from jobs.common.paths import as_date

    due, reason = registry.training_due(LAKE, as_date(day), settings.load(),
                                        force=bool(context["params"].get("als_force_retrain")))
    log.info("ALS training %s: %s", "due" if due else "not due", reason)
    return due


@task(doc_md="Log the night's ALS decision from `reports/als/dt=D/run.json`: trained or skipped, "
      "promoted or not and why, the metrics against popularity and the champion.")
def summarise_als(day: str) -> dict[str, Any]:
    report = run_report(STAGE, day)
    log.info("ALS %s: %s\n%s", report["status"], report["reason"],
             json.dumps({k: report.get(k) for k in ("version", "champion", "metrics", "counts")}, indent=2))
    return {k: report.get(k) for k in ("status", "reason", "version", "champion", "promoted")}
