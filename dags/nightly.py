"""
### Nightly pipeline

Runs at 02:00 UTC and processes the **previous UTC day** (event date D): drains the
clickstream topic one last time, then builds `bronze/clickstream/dt=D` with the Great
Expectations gate, then the A/B report on the validated data (`ab_report`: Spark aggregation,
scipy statistics, `reports/ab/dt=D/report.{json,html}` in the lake) and copies it to the reports
bucket (`publish_ab_report`). A failed gate fails `clickstream_bronze`, nothing downstream runs
and the partition is not published; the task log names the failed expectations and the Data Docs.

**Params** (Trigger DAG w/ config): `run_date` (YYYY-MM-DD) re-runs or backfills one day;
`full_refresh` rebuilds even when the published partition already has the same raw inputs;
`experiments` (list of ids) recomputes only those experiments' reports for the date, keeping the
others. Experiments are registered in `include/experiments.yaml`.
"""

from __future__ import annotations

from airflow.sdk import DAG, Param
from airflow.timetables.trigger import CronTriggerTimetable
from pipeline_airflow.tasks import (
    AB_REPORTS,
    BRONZE_CLICKSTREAM,
    DAG_DEFAULTS,
    LAKE,
    RUN_DATE,
    drain_clickstream,
    publish_ab_report,
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
        "experiments": Param([], type="array", items={"type": "string"},
                             description="A/B report only for these experiment ids (default: all registered)"),
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

    ab_report = spark_job(
        "ab_report",
        ["--date", RUN_DATE, "--lake-root", LAKE.root, "--experiments", "{{ params.experiments | join(',') }}"],
        doc_md="Exposures and outcomes aggregated in Spark, statistics in scipy; report.json/html in the lake.",
        outlets=[AB_REPORTS],
    )

    run_date >> drain_clickstream() >> bronze >> summarise_outputs(run_date)
    bronze >> ab_report >> publish_ab_report(run_date)
