"""The Kafka drain against a real Kafka-protocol broker: bounded, durable-then-commit, no loss."""

from __future__ import annotations

import datetime as dt
import itertools
import json

import numpy as np
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from pyspark.sql import functions as F

from demo import clickstream as gen
from demo import kafka as demo_kafka
from demo import settings as demo_settings
from demo import shop as demo_oltp
from jobs import kafka_drain as drain_cli
from jobs.cdc import merge as cdc_merge
from jobs.cdc import settings as cdc_settings
from jobs.cdc import snapshot as cdc_snapshot
from jobs.clickstream import transforms as job
from jobs.common import storage
from jobs.common.paths import Lake
from jobs.common.spark import load_schema, read_raw
from jobs.ingest import kafka as kafka_drain
from tests.integration.conftest import free_port

_topics = itertools.count()


def new_topic(bootstrap: str, partitions: int = 2) -> str:
    name = f"clicks{next(_topics)}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(name, partitions, 1)])[name].result(10)
    return name


def produce(bootstrap: str, topic: str, values: list[bytes], partitions: int = 2) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20})
    for i, value in enumerate(values):
        producer.produce(topic, value=value, key=f"k{i}".encode(), partition=i % partitions)
    assert producer.flush(30) == 0


def landed(lake: Lake, topic: str) -> list[dict]:
    lines = []
    for uri in storage.list_files(lake.raw_topic(topic), ".jsonl"):
        lines += [json.loads(line) for line in storage.read_bytes(uri).splitlines()]
    return lines


def committed(bootstrap: str, topic: str, group: str, partitions: int = 2) -> list[int]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        tps = consumer.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=10)
        return [tp.offset for tp in tps]
    finally:
        consumer.close()


def test_drains_everything_up_to_the_watermark_then_commits(kafka_broker, lake):
    topic = new_topic(kafka_broker)
    values = [json.dumps({"n": i}).encode() for i in range(2_000)] + [b"\xff\xfe binary"]
    produce(kafka_broker, topic, values)

    report = kafka_drain.drain(kafka_broker, topic, lake, group_id="g1")
    assert report.records == len(values)
    lines = landed(lake, topic)
    assert sorted((line["value"] or line["value_b64"]) for line in lines) == sorted(
        [v.decode() for v in values[:-1]] + ["//4gYmluYXJ5"])
    coordinates = {(line["partition"], line["offset"]) for line in lines}
    assert len(coordinates) == len(values)  # every record keeps its own Kafka coordinates
    for uri in storage.list_files(lake.raw_topic(topic), ".jsonl"):
        partition, first, last = uri.rsplit("/", 1)[1].removesuffix(".jsonl").split("-")[1:]
        offsets = [line["offset"] for line in map(json.loads, storage.read_bytes(uri).splitlines())]
        assert (offsets[0], offsets[-1]) == (int(first), int(last)) and f"partition={partition}" in uri
    assert committed(kafka_broker, topic, "g1") == [p.end_offset for p in report.partitions]

    again = kafka_drain.drain(kafka_broker, topic, lake, group_id="g1")
    assert again.records == 0  # nothing new: nothing read, nothing written
    produce(kafka_broker, topic, [b'{"n": "late"}'] * 10)
    assert kafka_drain.drain(kafka_broker, topic, lake, group_id="g1").records == 10
    assert len(landed(lake, topic)) == len(values) + 10


def test_empty_topic_drains_nothing(kafka_broker, lake):
    topic = new_topic(kafka_broker, partitions=3)
    report = kafka_drain.drain(kafka_broker, topic, lake, group_id="g-empty")
    assert report.records == 0 and [p.files for p in report.partitions] == [[], [], []]
    assert storage.list_files(lake.raw_topic(topic)) == []


def test_broker_down_is_a_clear_error_and_writes_nothing(lake):
    dead = f"127.0.0.1:{free_port()}"
    with pytest.raises(kafka_drain.DrainError, match=f"Kafka broker {dead} unreachable"):
        kafka_drain.drain(dead, "clickstream", lake, group_id="g-dead", timeout=3)
    assert storage.list_files(lake.raw_topic("clickstream")) == []


def test_cli_reports_failure_with_one_line_and_exit_code(lake, capsys):
    rc = drain_cli.main(["--bootstrap-servers", f"127.0.0.1:{free_port()}", "--topic", "t",
                           "--lake-root", lake.root, "--connect-timeout", "3"])
    assert rc == 1
    assert capsys.readouterr().err.startswith("kafka_drain failed: Kafka broker")


class CrashBeforeCommit(Exception):
    pass


def test_crash_between_write_and_commit_loses_nothing_and_counts_once(kafka_broker, lake, spark,
                                                                      monkeypatch):
    topic = new_topic(kafka_broker, partitions=1)
    now = dt.datetime.now(dt.UTC).isoformat()  # Kafka stamps records now: keep events on time
    event = {"event_type": "click", "event_ts": now, "user_id": "u", "consent": True}
    produce(kafka_broker, topic, [json.dumps({**event, "event_id": f"e{i}"}).encode() for i in range(10)], 1)

    real_flush = kafka_drain._flush

    def write_then_crash(consumer, lake_, topic_, plan, batch):
        kafka_drain.raw_zone.write_grouped(lake_, batch)  # the files become durable ...
        raise CrashBeforeCommit  # ... and the process dies before the commit

    monkeypatch.setattr(kafka_drain, "_flush", write_then_crash)
    with pytest.raises(CrashBeforeCommit):
        kafka_drain.drain(kafka_broker, topic, lake, group_id="g-crash")
    assert committed(kafka_broker, topic, "g-crash", 1) == [-1001]  # nothing committed

    monkeypatch.setattr(kafka_drain, "_flush", real_flush)
    produce(kafka_broker, topic, [json.dumps({**event, "event_id": f"e{i}"}).encode() for i in range(10, 15)], 1)
    report = kafka_drain.drain(kafka_broker, topic, lake, group_id="g-crash")
    assert report.records == 15  # the retried range is read again, with the new records
    assert len(landed(lake, topic)) == 25  # offsets 0-9 landed twice, in two files

    schema = load_schema("clickstream_event")
    raw = read_raw(spark, [lake.raw_topic(topic)])
    rows = job.resolve_duplicates(job.classify(job.parse_events(raw, schema),
                                               job.Rules.from_settings(), schema)
                                  .where(F.col("attributed_dt").isNotNull()))
    assert job.count_outcomes(rows) == {"bronze": 15, "reread_collapsed": 10}


def test_generator_to_kafka_to_raw_round_trip(kafka_broker, lake):
    topic = new_topic(kafka_broker, partitions=4)
    population = gen.Population(gen.Scale(events_per_day=3_000, users=300, items=100), 1, demo_settings.load())
    records = gen.generate_day(population, dt.date(2026, 11, 20), 3_000, 1, topic)
    demo_kafka.produce(records, kafka_broker)  # batched producer: exercises the fetched-watermark path
    report = kafka_drain.drain(kafka_broker, topic, lake, group_id="g-gen")
    assert report.records == len(records)
    assert sorted(line["value"] for line in landed(lake, topic)) == sorted(r.value.decode() for r in records)


def test_cdc_topics_drained_by_prefix_then_snapshot_plus_merge_equals_the_database(kafka_broker, lake, spark):
    """Debezium-shaped events of the demo shop through a real broker: every cdc.* topic is drained (the
    unconfigured one too), and the dump's snapshot plus the merged day equals the database at the end."""
    day = dt.date(2026, 11, 20)
    shop = demo_oltp.initial_shop([f"u{i:07d}" for i in range(300)], np.full(40, 9.99), ["jazz", "rock"],
                                  demo_settings.load().shop, 5, day)
    watermark = demo_oltp.write_dump(shop, lake.export_dir("it"), dt.datetime(2026, 11, 20, tzinfo=dt.UTC))
    records = demo_oltp.day_records(shop, day)  # the shop is now at the end of the day
    topics = sorted({r.topic for r in records})
    admin = AdminClient({"bootstrap.servers": kafka_broker})
    for future in admin.create_topics([NewTopic(t, 3, 1) for t in topics]).values():
        future.result(10)
    demo_kafka.produce(records, kafka_broker)

    drained = kafka_drain.drain_prefix(kafka_broker, "cdc.", lake)
    assert {r.topic: r.records for r in drained} == {t: sum(r.topic == t for r in records) for t in topics}
    assert "cdc.public.audit_log" in topics

    cdc = cdc_settings.load()
    for table in cdc.tables:
        cdc_snapshot.snapshot_dump(spark, lake, table, f"{lake.export_dir('it')}/{table.name}.json", "json",
                                   [watermark["lsn"]], watermark["taken_at"])
    report = cdc_merge.run(spark, lake, day, cdc)
    assert report["status"] == "published", cdc_merge.failures(report)
    assert report["unconfigured_sources"] == ["public.audit_log"]
    assert report["counts"]["quarantined:unknown_op"] == report["counts"]["quarantined:malformed_json"] == 1
    subscriptions = spark.read.parquet(lake.table("silver", "subscriptions_current"))
    assert sorted((r.subscription_id, r.plan, r.status) for r in subscriptions.collect()) == sorted(
        (r["subscription_id"], r["plan"], r["status"]) for r in shop.rows["subscriptions"].values())
    users = spark.read.parquet(lake.table("silver", "users_current")).select("user_id").collect()
    assert sorted(r.user_id for r in users) == sorted(r["user_id"] for r in shop.rows["users"].values())
