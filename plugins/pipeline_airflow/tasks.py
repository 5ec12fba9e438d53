"""Task factories shared by the DAGs, so every DAG runs jobs the same way.

Imports stay light (no pyspark, pandas or GX at module level): DAG files import this at
parse time.
"""

from __future__ import annotations

import datetime as dt
import os
from typing import Any

from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator
from airflow.sdk import Asset, task
from airflow.sdk.exceptions import AirflowException, AirflowFailException

from jobs.cdc import settings as cdc_settings
from jobs.common import config, exit_codes
from jobs.common.paths import Lake
from pipeline_airflow.dates import resolve_run_date as _resolve

RUN_DATE = "{{ ti.xcom_pull(task_ids='resolve_run_date') }}"
SETTINGS = config.pipeline_config()["airflow"]
DEFAULT_ARGS = {
    "owner": "data-platform",
    # PIPELINE_TASK_RETRIES=0 for development and tests: fail at once instead of waiting to retry
    "retries": int(os.environ.get("PIPELINE_TASK_RETRIES", SETTINGS["retries"])),
    "retry_delay": dt.timedelta(minutes=int(SETTINGS["retry_delay_minutes"])),
}
#: What every pipeline DAG shares: no catch-up storms, one run at a time, the same retries.
DAG_DEFAULTS: dict[str, Any] = {
    "start_date": dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
    "catchup": False,
    "max_active_runs": 1,
    "default_args": DEFAULT_ARGS,
}
LAKE = Lake(config.lake_root())
TOPIC = config.pipeline_config()["clickstream"]["topic"]
RAW_CLICKSTREAM = Asset(name="raw_clickstream", uri=LAKE.raw_topic(TOPIC))
BRONZE_CLICKSTREAM = Asset(name="bronze_clickstream", uri=LAKE.table("bronze", "clickstream"))
AB_REPORTS = Asset(name="ab_reports", uri=LAKE.table("reports", "ab"))
ALS_MODELS = Asset(name="als_models", uri=LAKE.table("models", "als"))
CDC = cdc_settings.load()
CDC_SILVER = [Asset(name=f"silver_{t.name}_{kind}", uri=LAKE.table("silver", f"{t.name}_{kind}"))
              for t in CDC.tables for kind in ("current", "history")]
#: Airflow connection of the OLTP PostgreSQL database that JDBC snapshots read (host, port, schema =
#: database, login, password); spark-submit by hand uses $PIPELINE_OLTP_JDBC_URL/_USER/_PASSWORD instead.
OLTP_CONN_ID = "oltp_postgres"
#: Airflow connection for the reports bucket: login/password = access key/secret, extra
#: {"bucket": ..., "prefix": ..., "endpoint_url": ..., "region_name": ...}.
REPORTS_CONN_ID = "ab_reports_s3"


@task(retries=0, doc_md="Resolve the event date this run processes: the `run_date` param, "
      "else the day before the logical date (or before `run_after` for manual runs).")
def resolve_run_date(**context: Any) -> str:
    return _resolve(context["params"].get("run_date"), context.get("logical_date"),
                    context["dag_run"].run_after)


def _kafka() -> tuple[str, dict[str, Any]]:
    """Bootstrap servers and librdkafka settings from the `kafka_default` connection; skip when raw/ is
    filled by another writer (`PIPELINE_CLICKSTREAM_SOURCE=raw`, the embedded demo)."""
    from airflow.sdk import Connection
    from airflow.sdk.exceptions import AirflowSkipException

    if config.clickstream_source() != "kafka":
        raise AirflowSkipException("PIPELINE_CLICKSTREAM_SOURCE=raw: raw/ is filled by another writer")
    conn = Connection.get("kafka_default")
    extra = dict(conn.extra_dejson)
    return extra.pop("bootstrap.servers", None) or f"{conn.host}:{conn.port or 9092}", extra


@task(pool=SETTINGS["drain_pool"], outlets=[RAW_CLICKSTREAM], doc_md="""
Drain the clickstream topic from the committed offsets to the high watermarks seen at start
into `raw/clickstream/` (files named by partition and offset range, written aside then
renamed), committing offsets only after the files are durable. Broker from the `kafka_default`
connection (extra `bootstrap.servers` and any librdkafka settings). Skipped when
`PIPELINE_CLICKSTREAM_SOURCE=raw` (the embedded demo writes raw/ directly).
""")
def drain_clickstream() -> dict[str, Any]:
    from jobs.kafka_drain import drain

    bootstrap, extra = _kafka()
    return drain(bootstrap, TOPIC, LAKE, extra_conf=extra).as_dict()


@task(pool=SETTINGS["drain_pool"], doc_md="""
Drain every `cdc.*` topic (one per table Debezium captures, configured in `include/cdc.yaml` or
not) into `raw/cdc.<schema>.<table>/`, the same bounded at-least-once copy as the clickstream
drain. Skipped when `PIPELINE_CLICKSTREAM_SOURCE=raw` (the embedded demo writes raw/ directly).
""")
def drain_cdc() -> list[dict[str, Any]]:
    from jobs.kafka_drain import drain_prefix

    bootstrap, extra = _kafka()
    return [r.as_dict() for r in drain_prefix(bootstrap, f"{CDC.topic_prefix}.", LAKE, extra_conf=extra)]


@task.short_circuit(ignore_downstream_trigger_rules=False, trigger_rule="none_failed", doc_md="""
Go on to `cdc_snapshot` only when the `snapshot_tables` param names tables; otherwise it is
skipped and `cdc_merge` runs the incremental merge alone.
""")
def snapshot_requested(**context: Any) -> bool:
    tables = list(context["params"].get("snapshot_tables") or [])
    for name in tables:
        CDC.table(name)  # an unknown table fails here, before Spark starts
    print(f"snapshot of {tables}" if tables else "no snapshot requested: incremental merge only")
    return bool(tables)


@task(doc_md="Log the night's CDC merge from `reports/cdc/dt=D/run.json`: status, counts per kind, and "
      "per table the rows, versions and what each event did (applied, duplicate, flagged).")
def summarise_cdc(day: str) -> dict[str, Any]:
    import json

    from jobs.cdc.state import merge_report
    from jobs.common.paths import as_date

    report = merge_report(LAKE, as_date(day))
    summary = {"status": report["status"], "counts": report["counts"], "tables": {
        name: m["counts"] for name, m in report["tables"].items()}}
    print(json.dumps(summary, indent=2))
    return summary


@task.sensor(poke_interval=60 * int(SETTINGS["cdc_wait_poke_minutes"]),
             timeout=3600 * float(SETTINGS["cdc_wait_timeout_hours"]), mode="reschedule", doc_md="""
Wait until the `cdc_ingestion` DAG has merged date D (`reports/cdc/dt=D/run.json` says
`published`), so tonight's outputs see the OLTP tables as of the end of D. A rejected merge fails
this task at once (not retried); no report within `cdc_wait_timeout_hours` fails it too.
""")
def wait_for_cdc(day: str) -> Any:
    from airflow.sdk import PokeReturnValue

    from jobs.cdc.state import merge_report
    from jobs.common.paths import as_date

    report = merge_report(LAKE, as_date(day))
    if report is None:
        print(f"no CDC merge for {day} yet (reports/cdc/dt={day}/run.json); waiting")
        return PokeReturnValue(is_done=False)
    if report["status"] != "published":
        raise AirflowFailException(f"the CDC merge for {day} was rejected by validation (run {report['run_id']}); "
                                   f"fix and re-run cdc_ingestion for {day}: {report.get('rejected_batch')}")
    return PokeReturnValue(is_done=True, xcom_value={"run_id": report["run_id"], "counts": report["counts"]})


class SparkJobOperator(SparkSubmitOperator):
    """spark-submit that fails without retrying when the job says its data was rejected."""

    def execute(self, context: Any) -> None:
        try:
            super().execute(context)
        except AirflowException as exc:
            if f"Error code is: {exit_codes.VALIDATION_REJECTED}." in str(exc):
                raise AirflowFailException(
                    f"{self.task_id}: data rejected by validation, nothing published (not retried); "
                    "the job's last log lines name the failed expectations and the Data Docs") from exc
            raise


@task(doc_md="Log where the day's outputs are and their counts (from the partition manifest).")
def summarise_outputs(day: str) -> dict[str, Any]:
    import json

    from jobs.common.outputs import partition_summary
    from jobs.common.paths import as_date

    summary = partition_summary(LAKE, "clickstream", as_date(day))
    print(json.dumps(summary, indent=2))
    return summary


@task(doc_md="""
Copy the night's `reports/ab/dt=D/report.{json,html}` to the reports bucket with boto3 and move
`latest.json` (never backwards on a backfill). Target from the `ab_reports_s3` connection
(extra `bucket`, `prefix`, `endpoint_url`), else `PIPELINE_REPORTS_BUCKET`; skipped when neither is set.
""")
def publish_ab_report(day: str) -> dict[str, Any]:
    from airflow.sdk import Connection
    from airflow.sdk.exceptions import AirflowNotFoundException, AirflowSkipException

    from jobs.ab.s3_publish import Target, publish
    from jobs.common.paths import as_date

    try:
        conn = Connection.get(REPORTS_CONN_ID)
        extra = conn.extra_dejson
        target = Target(extra["bucket"], extra.get("prefix", "ab-reports"), extra.get("endpoint_url"),
                        extra.get("region_name"), conn.login or None, conn.password or None)
    except AirflowNotFoundException:
        target = Target.from_env()
    if target is None:
        raise AirflowSkipException(f"no reports bucket configured: set the {REPORTS_CONN_ID} connection "
                                   "or PIPELINE_REPORTS_BUCKET; the report stays in the lake")
    return publish(LAKE, as_date(day), target)


@task.short_circuit(doc_md="""
Decide whether tonight trains ALS: the `als_force_retrain` param, no model yet, the last model
older than `cadence.every_days`, or the validated clickstream since it grew by
`cadence.min_new_events_ratio` of its data (`include/als.yaml`). Otherwise `als_train` and
`summarise_als` are skipped, with the reason in this task's log.
""")
def als_due(day: str, **context: Any) -> bool:
    from jobs.als import registry, settings
    from jobs.common.paths import as_date

    due, reason = registry.training_due(LAKE, as_date(day), settings.load(),
                                        force=bool(context["params"].get("als_force_retrain")))
    print(f"ALS training {'due' if due else 'not due'}: {reason}")
    return due


@task(doc_md="Log the night's ALS decision from `reports/als/dt=D/run.json`: trained or skipped, "
      "promoted or not and why, the metrics against popularity and the champion.")
def summarise_als(day: str) -> dict[str, Any]:
    import json

    from jobs.common import storage
    from jobs.common.paths import as_date

    report = json.loads(storage.read_bytes(f"{LAKE.partition('reports', 'als', as_date(day))}/run.json"))
    print(f"ALS {report['status']}: {report['reason']}")
    print(json.dumps({k: report.get(k) for k in ("version", "champion", "metrics", "counts")}, indent=2))
    return {k: report.get(k) for k in ("status", "reason", "version", "champion", "promoted")}


def spark_job(job: str, args: list[str], doc_md: str, **kwargs: Any) -> SparkSubmitOperator:
    """A `jobs/<job>.py` run through spark-submit on the `spark_default` connection.

    The same command works by hand: `spark-submit jobs/<job>.py <args>`.
    """
    return SparkJobOperator(
        task_id=job,
        application=str(config.JOBS_DIR / f"{job}.py"),
        application_args=args,
        conn_id="spark_default",
        name=f"pipeline-{job}",
        conf=dict(config.pipeline_config()["spark_conf"]),
        doc_md=doc_md,
        **kwargs,
    )
