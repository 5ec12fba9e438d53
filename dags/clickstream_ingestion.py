"""
### Clickstream ingestion

Every hour, drains the clickstream topic into the raw landing zone so raw/ stays well ahead
of Kafka retention. Offsets are committed only after the raw files are durable; the
`kafka_drain` pool (1 slot) keeps it from overlapping the nightly catch-up drain. The
nightly DAG builds bronze from what lands here.
"""

from __future__ import annotations

from airflow.sdk import DAG
from airflow.timetables.trigger import CronTriggerTimetable
from pipeline_airflow.shared import DAG_DEFAULTS
from pipeline_airflow.tasks.ingest import drain_clickstream

with DAG(
    dag_id="clickstream_ingestion",
    schedule=CronTriggerTimetable("10 * * * *", timezone="UTC"),
    doc_md=__doc__,
    tags=["ingestion", "clickstream"],
    **DAG_DEFAULTS,
):
    drain_clickstream()
