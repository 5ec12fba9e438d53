"""What every DAG and task shares: the lake, the assets, the connection ids, the DAG defaults, the run date.

Imports stay light (no pyspark, pandas or GX): DAG files import this at parse time.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from airflow.sdk import Asset

from jobs.cdc import settings as cdc_settings
from jobs.common import config, settings
from jobs.common.paths import Lake

#: The event date a run processes, as the `resolve_run_date` task returned it (templated into job arguments).
RUN_DATE = "{{ ti.xcom_pull(task_ids='resolve_run_date') }}"
AIRFLOW = settings.pipeline().airflow
LAKE = Lake(config.lake_root())
TOPIC = settings.pipeline().clickstream.topic
CDC = cdc_settings.load()

#: What every pipeline DAG shares: no catch-up storms, one run at a time, the same retries.
DAG_DEFAULTS: dict[str, Any] = {
    "start_date": dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
    "catchup": False,
    "max_active_runs": 1,
    "default_args": {
        "owner": "data-platform",
        # PIPELINE_TASK_RETRIES=0 for development and tests: fail at once instead of waiting to retry
        "retries": config.task_retries(AIRFLOW.retries),
        "retry_delay": dt.timedelta(minutes=AIRFLOW.retry_delay_minutes),
    },
}

# Assets: the tables tasks publish, for DAGs to schedule on and for the UI's lineage view.
RAW_CLICKSTREAM = Asset(name="raw_clickstream", uri=LAKE.raw_topic(TOPIC))
BRONZE_CLICKSTREAM = Asset(name="bronze_clickstream", uri=LAKE.table("bronze", "clickstream"))
AB_REPORTS = Asset(name="ab_reports", uri=LAKE.table("reports", "ab"))
ALS_MODELS = Asset(name="als_models", uri=LAKE.table("models", "als"))
CDC_SILVER = [Asset(name=f"silver_{t.name}_{kind}", uri=LAKE.silver(t.name, kind))
              for t in CDC.tables for kind in ("current", "history")]
FEATURES = [Asset(name=f"features_{table}", uri=LAKE.table("gold", f"features/{table}"))
            for table in ("user_day", "item_day")]
LABELS = Asset(name="churn_labels", uri=LAKE.table("gold", "labels"))

#: Airflow connection of the OLTP PostgreSQL database that JDBC snapshots read (host, port, schema =
#: database, login, password); spark-submit by hand uses $PIPELINE_OLTP_JDBC_URL/_USER/_PASSWORD instead.
OLTP_CONN_ID = "oltp_postgres"
#: Airflow connection for the reports bucket: login/password = access key/secret, extra
#: {"bucket": ..., "prefix": ..., "endpoint_url": ..., "region_name": ...}.
REPORTS_CONN_ID = "ab_reports_s3"
#: Airflow connection of the Kafka cluster: extra `bootstrap.servers` plus any librdkafka settings.
KAFKA_CONN_ID = "kafka_default"


def run_report(stage: str, day: str) -> dict[str, Any] | None:
    """`reports/<stage>/dt=D/run.json` of a job's run for the date (None: it has not run), read without Spark."""
    from jobs.common.outputs import read_run_report
    from jobs.common.paths import as_date

    return read_run_report(LAKE, stage, as_date(day))
