"""
### Erasure on request

Trigger with the ids of the people to erase (`user_ids`). The job removes every row about them from
every lake table listed in `include/privacy.yaml` (clickstream bronze and quarantine, the CDC change log,
snapshots and silver tables, the ALS id map, embeddings and recommendations), each table rewritten under
its writers' lock, and adds them to the suppression list so no rebuild or late event brings them back.
The report (`reports/privacy/dt=D/erasure-<run>.json`) counts the rows removed per table, never the ids.
raw/ keeps the exact records until its retention deletes them (`retention.raw_days`). An account that
still exists in the OLTP database is erased there by the application; the CDC DAG then erases its
deletion automatically.
"""

from __future__ import annotations

from airflow.sdk import DAG, Param
from pipeline_airflow import params
from pipeline_airflow.dates import resolve_run_date
from pipeline_airflow.shared import DAG_DEFAULTS, LAKE, RUN_DATE
from pipeline_airflow.spark import spark_job

with DAG(
    dag_id="privacy_erasure",
    schedule=None,
    doc_md=__doc__,
    tags=["privacy"],
    **DAG_DEFAULTS,
    params={
        "run_date": params.run_date("The date the erasure is recorded under (default: the day before the run)"),
        "user_ids": Param([], type="array", items={"type": "string", "minLength": 1, "maxLength": 128},
                          minItems=1, maxItems=10_000, title="User ids", description="The people to erase"),
    },
):
    erase = spark_job(
        "privacy_erasure",
        doc_md="Remove every row about these users from every lake table (privacy.yaml); suppress them for good.",
        options={"--date": RUN_DATE, "--lake-root": LAKE.root, "--users": "{{ params.user_ids | join(',') }}"},
    )
    resolve_run_date() >> erase
