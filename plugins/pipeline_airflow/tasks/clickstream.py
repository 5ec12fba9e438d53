"""The clickstream stage in the DAG: whether a scheduled run has input, the summary of a published day."""

from __future__ import annotations

import json
import logging
from typing import Any

from airflow.sdk import task

from pipeline_airflow.shared import LAKE, TOPIC

log = logging.getLogger(__name__)


@task(doc_md="Log where the day's outputs are and their counts (from the partition manifest).")
def summarise_outputs(day: str) -> dict[str, Any]:
    from jobs.common.outputs import partition_summary
    from jobs.common.paths import as_date

    summary = partition_summary(LAKE, "clickstream", as_date(day))
    log.info("clickstream outputs for %s:\n%s", day, json.dumps(summary, indent=2))
    return summary


@task.short_circuit(ignore_downstream_trigger_rules=True, trigger_rule="none_failed", doc_md="""
A **scheduled** run goes on only when the day's clickstream has landed (`raw/<topic>/kafka_date=D`
after the drain, or without it when raw/ is filled by something else). Otherwise the whole run is
skipped at once, with the reason in this task's log: unpausing the DAG on a machine without data,
or a night the source was down, must not leave a failed run or a `wait_for_cdc` holding the DAG's
only run slot for hours ahead of a manual run. A manual or API run always goes on (a missing input
then fails `clickstream_bronze` with a clear message).
""")
def input_landed(day: str, **context: Any) -> bool:
    from jobs.common import storage
    from jobs.common.paths import as_date

    if context["dag_run"].run_type != "scheduled":
        return True
    raw = LAKE.raw_day(TOPIC, as_date(day))
    if storage.exists(raw):
        return True
    log.warning("scheduled run for %s: no clickstream under %s, so nothing to do tonight; the run is skipped. "
                "Trigger the DAG with run_date=%s once the data is there.", day, raw, day)
    return False
