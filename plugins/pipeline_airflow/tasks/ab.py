"""The A/B stage's copy of the night's report to the reports bucket."""

from __future__ import annotations

from typing import Any

from airflow.sdk import Connection, task
from airflow.sdk.exceptions import AirflowNotFoundException, AirflowSkipException

from pipeline_airflow.shared import LAKE, REPORTS_CONN_ID


@task(doc_md="""
Copy the night's `reports/ab/dt=D/report.{json,html}` to the reports bucket with boto3 and move
`latest.json` (never backwards on a backfill). Target from the `ab_reports_s3` connection
(extra `bucket`, `prefix`, `endpoint_url`), else `PIPELINE_REPORTS_BUCKET`; skipped when neither is set.
""")
def publish_ab_report(day: str) -> dict[str, Any]:
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
