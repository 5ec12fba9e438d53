"""Which date a run processes.

The nightly schedule is a CronTriggerTimetable: a run fires at 02:00 UTC on day D+1 with
logical date D+1 02:00 and processes event date D (the day before). A UI or API trigger may
carry no logical date at all; then the run's `run_after` stands in. A `run_date` param,
when given, wins: that is how a user re-runs or backfills one day from the UI.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from airflow.sdk import task

from pipeline_airflow.params import refuse_unknown


def run_date_for(run_date_param: str | None, logical_date: dt.datetime | None, run_after: dt.datetime) -> str:
    """The event date (YYYY-MM-DD) a run processes."""
    if run_date_param:
        try:
            return dt.date.fromisoformat(run_date_param).isoformat()
        except ValueError:
            raise ValueError(f"param run_date must be YYYY-MM-DD, got {run_date_param!r}") from None
    anchor = logical_date or run_after
    return (anchor.astimezone(dt.UTC).date() - dt.timedelta(days=1)).isoformat()


@task(retries=0, doc_md="Resolve the event date this run processes: the `run_date` param, "
      "else the day before the logical date (or before `run_after` for manual runs). A conf key the DAG "
      "does not declare (a misspelt param) fails the run here, before anything runs.")
def resolve_run_date(**context: Any) -> str:
    refuse_unknown(context)
    return run_date_for(context["params"].get("run_date"), context.get("logical_date"), context["dag_run"].run_after)
