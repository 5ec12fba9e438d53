"""
### CDC ingestion

Runs at 00:30 UTC and merges the **previous UTC day** (Kafka date D) of the OLTP database's
Debezium change events: drains every `cdc.*` topic into `raw/` (`drain_cdc`), then `cdc_merge`
writes the change log to `bronze/cdc_changes/dt=D` (bad events to `quarantine/` with a reason),
merges it into `silver/<table>_current` and `silver/<table>_history` (SCD type 2) behind the GX
gates, and writes `reports/cdc/dt=D/run.json`. The nightly DAG waits for that report.

**Onboarding a table** (Trigger DAG w/ config): `snapshot_tables` (table names from
`include/cdc.yaml`) runs `cdc_snapshot` first: a parallel JDBC read of the `oltp_postgres`
connection with the WAL position as its watermark, or, with `snapshot_dump`, a CSV/JSON export
(`{table}` in the path stands for the table name) with the position it was taken at
(`snapshot_watermark_lsn`, or `snapshot_watermark_binlog` for MySQL) and its time
(`snapshot_taken_at`). The merge then starts from the snapshot and applies only the changes
after the watermark. `run_date` re-runs one day; a
re-run or a replayed day changes nothing (events are de-duplicated by key, position and op).
"""

from __future__ import annotations

from airflow.sdk import DAG, Param
from airflow.timetables.trigger import CronTriggerTimetable
from pipeline_airflow import params
from pipeline_airflow.dates import resolve_run_date
from pipeline_airflow.shared import CDC, CDC_SILVER, DAG_DEFAULTS, LAKE, OLTP_CONN_ID, RUN_DATE
from pipeline_airflow.spark import spark_job
from pipeline_airflow.tasks.cdc import snapshot_requested, summarise_cdc
from pipeline_airflow.tasks.ingest import drain_cdc

with DAG(
    dag_id="cdc_ingestion",
    schedule=CronTriggerTimetable("30 0 * * *", timezone="UTC"),
    doc_md=__doc__,
    tags=["ingestion", "cdc"],
    **DAG_DEFAULTS,
    params={
        "run_date": params.run_date("Kafka date to merge (default: the day before the run)"),
        "snapshot_tables": Param([], type="array", items={"type": "string", "enum": [t.name for t in CDC.tables]},
                                 title="Snapshot tables",
                                 description="Take a full snapshot of these tables first (onboarding, re-sync)"),
        "snapshot_dump": params.text("Snapshot dump", "Read a CSV/JSON export instead of JDBC, e.g. "
                                                      "file:///exports/{table}.json ({table}: the table name)"),
        "snapshot_format": Param("json", enum=["json", "csv"], title="Dump format",
                                 description="Format of snapshot_dump"),
        "snapshot_watermark_lsn": params.text("Dump's LSN", "PostgreSQL LSN when the export started (dump only)",
                                              32, r"^([0-9]{1,20}|[0-9A-Fa-f]{1,8}/[0-9A-Fa-f]{1,8})$"),
        "snapshot_watermark_binlog": params.text("Dump's binlog position",
                                                 "MySQL binlog file:pos when the export started (dump only)",
                                                 280, r"^[^:]{1,255}:[0-9]{1,20}$"),
        "snapshot_taken_at": params.text("Dump's time", "When the export started, ISO-8601 UTC (dump only; "
                                                        "default: now)", 40),
    },
):
    run_date = resolve_run_date()
    snapshot = spark_job(
        "cdc_snapshot",
        doc_md="Full snapshot of the requested tables (JDBC range-partitioned reads, or the dump) with its "
               "watermark, into bronze/cdc_snapshots/<table>/; the next merge starts from it.",
        options={"--tables": "{{ params.snapshot_tables | join(',') }}", "--lake-root": LAKE.root,
                 "--dump": "{{ params.snapshot_dump }}", "--format": "{{ params.snapshot_format }}",
                 "--watermark-lsn": "{{ params.snapshot_watermark_lsn }}",
                 "--watermark-binlog": "{{ params.snapshot_watermark_binlog }}",
                 "--taken-at": "{{ params.snapshot_taken_at }}"},
        jdbc_conn_id=OLTP_CONN_ID,  # JDBC URL, user and password from the connection, at run time
    )
    merge = spark_job(
        "cdc_merge",
        options={"--date": RUN_DATE, "--lake-root": LAKE.root},
        doc_md="Change log to bronze (quarantine with reasons), SCD2 merge into silver <table>_current and "
               "<table>_history, GX gates, atomic publish, reports/cdc/dt=D/run.json.",
        trigger_rule="none_failed",
        outlets=CDC_SILVER,
    )
    erase = spark_job(
        "privacy_erasure",
        doc_md="Erase the users the OLTP database deleted that day from every lake table (privacy.yaml) and add "
               "them to the suppression list, so no rebuild or late event brings them back.",
        options={"--date": RUN_DATE, "--lake-root": LAKE.root},
        switches={"--deleted": True},
    )
    run_date >> drain_cdc() >> snapshot_requested() >> snapshot >> merge >> erase >> summarise_cdc(run_date)
