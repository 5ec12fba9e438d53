"""The CDC stage's decisions and summaries: whether to snapshot, the nightly's wait for the merge, the log."""

from __future__ import annotations

import json
import logging
from typing import Any

from airflow.sdk import PokeReturnValue, task
from airflow.sdk.exceptions import AirflowFailException

from jobs.cdc import STAGE
from pipeline_airflow.shared import AIRFLOW, CDC, run_report

log = logging.getLogger(__name__)


@task.short_circuit(ignore_downstream_trigger_rules=False, trigger_rule="none_failed", doc_md="""
Go on to `cdc_snapshot` only when the `snapshot_tables` param names tables; otherwise it is
skipped and `cdc_merge` runs the incremental merge alone.
""")
def snapshot_requested(**context: Any) -> bool:
    tables = list(context["params"].get("snapshot_tables") or [])
    for name in tables:
        CDC.table(name)  # an unknown table fails here, before Spark starts
    if tables:
        log.info("snapshot of %s", tables)
    else:
        log.info("no snapshot requested: incremental merge only")
    return bool(tables)


@task(doc_md="Log the night's CDC merge from `reports/cdc/dt=D/run.json`: status, counts per kind, and "
      "per table the rows, versions and what each event did (applied, duplicate, flagged).")
def summarise_cdc(day: str) -> dict[str, Any]:
    report = run_report(STAGE, day)
    summary = {"status": report["status"], "counts": report["counts"], "tables": {
        name: m["counts"] for name, m in report["tables"].items()}}
    log.info("CDC merge of %s:\n%s", day, json.dumps(summary, indent=2))
    return summary


@task.sensor(poke_interval=60 * AIRFLOW.cdc_wait_poke_minutes, timeout=3600 * AIRFLOW.cdc_wait_timeout_hours,
             mode="reschedule", doc_md="""
Wait until the `cdc_ingestion` DAG has merged date D (`reports/cdc/dt=D/run.json` says
`published`), so tonight's outputs see the OLTP tables as of the end of D. A rejected merge fails
this task at once (not retried); no report within `cdc_wait_timeout_hours` fails it too.
""")
def wait_for_cdc(day: str) -> PokeReturnValue:
    report = run_report(STAGE, day)
    if report is None:
        log.info("no CDC merge for %s yet (reports/cdc/dt=%s/run.json); waiting", day, day)
        return PokeReturnValue(is_done=False)
    if report["status"] != "published":
        raise AirflowFailException(f"the CDC merge for {day} was rejected by validation (run {report['run_id']}); "
                                   f"fix and re-run cdc_ingestion for {day}: {report.get('rejected_batch')}")
    return PokeReturnValue(is_done=True, xcom_value={"run_id": report["run_id"], "counts": report["counts"]})
