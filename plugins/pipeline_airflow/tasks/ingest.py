"""Kafka -> raw/: the drains of the clickstream topic and of every CDC topic (in-process: I/O, not Spark)."""

from __future__ import annotations

from typing import Any

from airflow.sdk import Connection, task
from airflow.sdk.exceptions import AirflowSkipException

from jobs.common import config
from pipeline_airflow.shared import AIRFLOW, CDC, KAFKA_CONN_ID, LAKE, RAW_CLICKSTREAM, TOPIC


def _kafka() -> tuple[str, dict[str, Any]]:
    """Bootstrap servers and librdkafka settings from the `kafka_default` connection; skip when raw/ is
    filled by another writer (`PIPELINE_CLICKSTREAM_SOURCE=raw`, the embedded demo)."""
    if config.clickstream_source() != "kafka":
        raise AirflowSkipException("PIPELINE_CLICKSTREAM_SOURCE=raw: raw/ is filled by another writer")
    conn = Connection.get(KAFKA_CONN_ID)
    extra = dict(conn.extra_dejson)
    return extra.pop("bootstrap.servers", None) or f"{conn.host}:{conn.port or 9092}", extra


@task(pool=AIRFLOW.drain_pool, outlets=[RAW_CLICKSTREAM], doc_md="""
Drain the clickstream topic from the committed offsets to the high watermarks seen at start
into `raw/clickstream/` (files named by partition and offset range, written aside then
renamed), committing offsets only after the files are durable. Broker from the `kafka_default`
connection (extra `bootstrap.servers` and any librdkafka settings). Skipped when
`PIPELINE_CLICKSTREAM_SOURCE=raw` (the embedded demo writes raw/ directly).
""")
def drain_clickstream() -> dict[str, Any]:
    from jobs.ingest.kafka import drain

    bootstrap, extra = _kafka()
    return drain(bootstrap, TOPIC, LAKE, extra_conf=extra).as_dict()


@task(pool=AIRFLOW.drain_pool, doc_md="""
Drain every `cdc.*` topic (one per table Debezium captures, configured in `cdc.yaml` or not)
into `raw/cdc.<schema>.<table>/`, the same bounded at-least-once copy as the clickstream drain.
Skipped when `PIPELINE_CLICKSTREAM_SOURCE=raw` (the embedded demo writes raw/ directly).
""")
def drain_cdc() -> list[dict[str, Any]]:
    from jobs.ingest.kafka import drain_prefix

    bootstrap, extra = _kafka()
    return [r.as_dict() for r in drain_prefix(bootstrap, f"{CDC.topic_prefix}.", LAKE, extra_conf=extra)]
