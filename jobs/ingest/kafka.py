"""Kafka -> raw/: a bounded, at-least-once copy of a topic into the raw landing zone.

The drain reads every partition from its committed offset up to the high watermark seen
at start (so a run ends even while producers keep writing), writes the records as raw
files named by topic/partition/offset range, makes each file durable (write aside, then
rename) and only then commits the offsets. A crash between write and commit re-reads the
same range next time; bronze dedupes on the Kafka coordinates, so nothing is lost and
nothing counts twice. Runs in-process in Airflow tasks (I/O, not Spark) and from `jobs/kafka_drain.py`.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec

from jobs.common import settings
from jobs.common.errors import PipelineError
from jobs.common.paths import Lake
from jobs.common.settings import KafkaDrainSettings
from jobs.ingest import raw_zone

log = logging.getLogger("kafka_drain")


class DrainError(PipelineError):
    """A drain that cannot proceed; nothing was committed."""


@dataclass
class PartitionReport:
    partition: int
    start_offset: int
    end_offset: int  # exclusive: the high watermark seen at start
    records: int = 0
    files: list[str] = field(default_factory=list)
    lost_to_retention: int = 0


@dataclass
class DrainReport:
    topic: str
    partitions: list[PartitionReport]
    seconds: float = 0.0

    @property
    def records(self) -> int:
        return sum(p.records for p in self.partitions)

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "records": self.records,
                "records_per_second": round(self.records / self.seconds) if self.seconds else None}


def _topics(admin: AdminClient, conf: dict[str, Any], timeout: float, topic: str | None = None) -> dict[str, Any]:
    """The broker's topic metadata (only `topic`'s if given); a clear error when the broker is not there."""
    try:
        return admin.list_topics(topic=topic, timeout=timeout).topics
    except KafkaException as exc:
        raise DrainError(
            f"Kafka broker {conf['bootstrap.servers']} unreachable after {timeout:.0f}s: {exc}"
        ) from None


def _check_broker(admin: AdminClient, conf: dict[str, Any], topic: str, timeout: float) -> list[int]:
    """Partitions of `topic`; a clear error when the broker or the topic is not there."""
    meta = _topics(admin, conf, timeout, topic).get(topic)
    if meta is None or meta.error is not None:
        raise DrainError(f"topic {topic!r} not found on {conf['bootstrap.servers']}: {meta and meta.error}")
    return sorted(meta.partitions)


def _plan(consumer: Consumer, admin: AdminClient, topic: str, partitions: list[int],
          timeout: float) -> list[PartitionReport]:
    """Start at the committed offset (or the earliest kept), end at the high watermark now."""
    tps = [TopicPartition(topic, p) for p in partitions]
    committed = {tp.partition: tp.offset for tp in consumer.committed(tps, timeout=timeout)}
    earliest = admin.list_offsets({tp: OffsetSpec.earliest() for tp in tps}, request_timeout=timeout)
    latest = admin.list_offsets({tp: OffsetSpec.latest() for tp in tps}, request_timeout=timeout)
    low = {tp.partition: fut.result().offset for tp, fut in earliest.items()}
    high = {tp.partition: fut.result().offset for tp, fut in latest.items()}
    plans = []
    for p in partitions:
        start = committed[p] if committed[p] >= 0 else low[p]
        lost = max(0, low[p] - start)
        if lost:
            log.error("partition %s: %d records expired by retention before they were drained "
                      "(committed %d < earliest %d)", p, lost, start, low[p])
        plans.append(PartitionReport(p, max(start, low[p]), high[p], lost_to_retention=lost))
    return plans


def drain_prefix(bootstrap_servers: str, prefix: str, lake: Lake, extra_conf: dict[str, Any] | None = None,
                 timeout: float | None = None) -> list[DrainReport]:
    """Drain every topic named `<prefix>...` (Debezium creates one per captured table, so new tables
    are picked up, configured or not); no such topic yet is an empty list, not an error."""
    conf = {"bootstrap.servers": bootstrap_servers, **(extra_conf or {})}
    timeout = timeout or settings.pipeline().kafka_drain.connect_timeout_seconds
    topics = _topics(AdminClient(conf), conf, timeout)
    return [drain(bootstrap_servers, topic, lake, extra_conf=extra_conf, timeout=timeout)
            for topic in sorted(t for t in topics if t.startswith(prefix))]


def drain(bootstrap_servers: str, topic: str, lake: Lake, group_id: str | None = None,
          extra_conf: dict[str, Any] | None = None, timeout: float | None = None) -> DrainReport:
    """Copy `topic` from the committed offsets up to the current high watermarks into raw/."""
    drain_settings = settings.pipeline().kafka_drain
    timeout = timeout or drain_settings.connect_timeout_seconds
    conf = {"bootstrap.servers": bootstrap_servers, **(extra_conf or {})}
    started = time.monotonic()
    admin = AdminClient(conf)
    partitions = _check_broker(admin, conf, topic, timeout)
    consumer = Consumer({
        **conf,
        "group.id": group_id or drain_settings.consumer_group,
        "enable.auto.commit": False,
        "enable.partition.eof": True,
        "auto.offset.reset": "earliest",
    })
    try:
        plans = _plan(consumer, admin, topic, partitions, timeout)
        for plan in plans:
            _drain_partition(consumer, lake, topic, plan, drain_settings)
    finally:
        consumer.close()
    report = DrainReport(topic, plans, seconds=time.monotonic() - started)
    log.info("drained %d records from %s in %.1fs", report.records, topic, report.seconds)
    return report


def _drain_partition(consumer: Consumer, lake: Lake, topic: str, plan: PartitionReport,
                     drain_settings: KafkaDrainSettings) -> None:
    if plan.start_offset >= plan.end_offset:
        log.info("partition %s: nothing new (offset %d)", plan.partition, plan.start_offset)
        return
    consumer.assign([TopicPartition(topic, plan.partition, plan.start_offset)])
    batch: list[raw_zone.RawRecord] = []
    max_records = drain_settings.max_records_per_file
    poll_timeout = drain_settings.poll_timeout_seconds
    done = False
    first_fetch = True
    last_progress = time.monotonic()
    while not done:
        # short polls: consume() waits for the full count or the timeout, whichever comes first
        messages = consumer.consume(num_messages=10_000, timeout=0.2)
        if not messages:
            if time.monotonic() - last_progress > poll_timeout:
                raise DrainError(f"partition {plan.partition}: no records within {poll_timeout}s before "
                                 f"offset {plan.end_offset}; broker stalled, nothing committed past the "
                                 f"last durable file")
            continue
        last_progress = time.monotonic()
        if first_fetch:
            _widen_to_fetched_watermark(consumer, topic, plan)
            first_fetch = False
        for msg in messages:
            if msg.error():
                if msg.error().code() == KafkaError._PARTITION_EOF:
                    done = True
                    break
                raise DrainError(f"partition {plan.partition}: {msg.error()}")
            if msg.offset() >= plan.end_offset:
                done = True
                break
            _, timestamp_ms = msg.timestamp()
            if timestamp_ms < 0:  # TIMESTAMP_NOT_AVAILABLE (very old producers): use arrival time
                timestamp_ms = int(time.time() * 1000)
            batch.append(raw_zone.RawRecord(topic, plan.partition, msg.offset(), timestamp_ms,
                                            msg.key(), msg.value()))
            if msg.offset() + 1 >= plan.end_offset:
                done = True
                break
        if len(batch) >= max_records or (done and batch):
            _flush(consumer, lake, topic, plan, batch)
            batch = []
    consumer.unassign()


def _widen_to_fetched_watermark(consumer: Consumer, topic: str, plan: PartitionReport) -> None:
    """Take the first fetch's high watermark when it is higher than the listed one.

    Some Kafka-compatible brokers (Tansu 0.6) answer ListOffsets with the last batch's base
    offset + 1 rather than the log end; the fetch response carries the true end. Fixed once
    per run, so the drain stays bounded.
    """
    _, fetched_high = consumer.get_watermark_offsets(TopicPartition(topic, plan.partition), cached=True)
    if fetched_high > plan.end_offset:
        log.info("partition %s: fetch reports high watermark %d (listed %d)",
                 plan.partition, fetched_high, plan.end_offset)
        plan.end_offset = fetched_high


def _flush(consumer: Consumer, lake: Lake, topic: str, plan: PartitionReport,
           batch: list[raw_zone.RawRecord]) -> None:
    """Durable files first, then the commit: the order that makes a crash lose nothing."""
    plan.files.extend(raw_zone.write_grouped(lake, batch))
    next_offset = batch[-1].offset + 1
    consumer.commit(offsets=[TopicPartition(topic, plan.partition, next_offset)], asynchronous=False)
    plan.records += len(batch)
