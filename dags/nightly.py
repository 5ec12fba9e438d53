"""
### Nightly pipeline

Runs at 02:00 UTC and processes the **previous UTC day** (event date D): drains the
clickstream topic one last time, then builds `bronze/clickstream/dt=D` with the Great
Expectations gate. A failed gate fails `clickstream_bronze`, nothing downstream runs and the
partition is not published; the task log names the failed expectations and the Data Docs.

**Params** (Trigger DAG w/ config): `run_date` (YYYY-MM-DD) re-runs or backfills one day;
`full_refresh` rebuilds even when the published partition already has the same raw inputs.
Later stages (CDC merge, features, ALS, A/B reports) join this DAG as they land.
"""

from __future__ import annotations

from airflow.sdk import DAG, Param
from airflow.timetables.trigger import CronTriggerTimetable
from pipeline_airflow.tasks import (
    BRONZE_CLICKSTREAM,
    DAG_DEFAULTS,
    LAKE,
    RUN_DATE,
    drain_clickstream,
    resolve_run_date,
    spark_job,
    summarise_outputs,
)

with DAG(
    dag_id="nightly",
    schedule=CronTriggerTimetable("0 2 * * *", timezone="UTC"),
    doc_md=__doc__,
    tags=["nightly", "clickstream"],
    **DAG_DEFAULTS,
    params={
        "run_date": Param(None, type=["null", "string"], format="date",
                          description="Event date to process (default: the day before the run)"),
        "full_refresh": Param(False, type="boolean",
                              description="Rebuild even if the partition's raw inputs did not change"),
    },
):
    run_date = resolve_run_date()
    bronze = spark_job(
        "clickstream_bronze",
        ["--date", RUN_DATE, "--lake-root", LAKE.root,
         "--refresh", "{{ 'full' if params.full_refresh else 'incremental' }}"],
        doc_md="Raw -> bronze Parquet for the day, quarantine with reasons, GX gate, atomic publish.",
        trigger_rule="none_failed",
        outlets=[BRONZE_CLICKSTREAM],
    )

    run_date >> drain_clickstream() >> bronze >> summarise_outputs(run_date)
