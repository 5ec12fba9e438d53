"""
### Iceberg table maintenance (weekly)

For every table of the lake's Iceberg catalog: compacts small data files and the delete files that
merge-on-read writes leave, expires snapshots older than `maintenance.snapshot_retention_days`
(time travel reaches that far back), and removes files no snapshot references that are older than
`maintenance.orphan_file_age_hours` (what a killed write left). Settings: `include/pipeline.yaml`.
Sunday 04:00 UTC, after the night's jobs. Trigger by hand with `tables` to maintain some tables only.
The report: `reports/maintenance/dt=D/run.json` (files and snapshots per table before and after).
"""

from __future__ import annotations

from airflow.sdk import DAG, Param
from airflow.timetables.trigger import CronTriggerTimetable
from pipeline_airflow import params
from pipeline_airflow.dates import resolve_run_date
from pipeline_airflow.shared import DAG_DEFAULTS, LAKE, RUN_DATE
from pipeline_airflow.spark import spark_job

with DAG(
    dag_id="table_maintenance",
    schedule=CronTriggerTimetable("0 4 * * 0", timezone="UTC"),
    doc_md=__doc__,
    tags=["maintenance", "iceberg"],
    **DAG_DEFAULTS,
    params={
        "run_date": params.run_date("The date the maintenance report is kept under (default: the day before)"),
        "tables": Param([], type="array", items={"type": "string", "pattern": r"^\w+\.\w+$", "maxLength": 128},
                        maxItems=500, title="Tables", description="zone.table names (default: every table)"),
    },
):
    maintain = spark_job(
        "maintenance_tables",
        doc_md="Compaction, snapshot expiry and orphan-file removal for every Iceberg table of the lake.",
        options={"--date": RUN_DATE, "--lake-root": LAKE.root, "--tables": "{{ params.tables | join(',') }}"},
    )
    resolve_run_date() >> maintain
