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

from airflow.sdk import DAG, Param, task
from airflow.timetables.trigger import CronTriggerTimetable
from pipeline_airflow.tasks import (
    BRONZE_CLICKSTREAM,
    DAG_DEFAULTS,
    RUN_DATE,
    drain_clickstream,
    resolve_run_date,
    spark_job,
)

from jobs.common import config

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
        ["--date", RUN_DATE, "--lake-root", config.lake_root(),
         "--refresh", "{{ 'full' if params.full_refresh else 'incremental' }}"],
        doc_md="Raw -> bronze Parquet for the day, quarantine with reasons, GX gate, atomic publish.",
        trigger_rule="none_failed",
        outlets=[BRONZE_CLICKSTREAM],
    )

    @task(doc_md="Log where the day's outputs are and their counts (from the partition manifest).")
    def summarise_outputs(day: str) -> dict:
        import json

        from jobs.common import storage
        from jobs.common.paths import Lake, as_date

        lake = Lake(config.lake_root())
        bronze_dir = lake.partition("bronze", "clickstream", as_date(day))
        manifest = json.loads(storage.read_bytes(Lake.manifest(bronze_dir)))
        summary = {"bronze": bronze_dir, "quarantine": lake.partition("quarantine", "clickstream", as_date(day)),
                   "data_docs": manifest["validation"]["data_docs"], "counts": manifest["counts"]}
        print(json.dumps(summary, indent=2))
        return summary

    run_date >> drain_clickstream() >> bronze >> summarise_outputs(run_date)
