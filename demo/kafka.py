"""A simulated Kafka for the demo: records with the partition, offset and timestamp a broker would give them,
or produced to a real broker. Shared by the clickstream and the shop database generators.
"""

from __future__ import annotations

import datetime as dt

import numpy as np

from jobs.ingest import raw_zone

EPOCH = dt.date(2000, 1, 1)
OFFSETS_PER_DAY = 10**8  # simulated Kafka offsets: each generated day owns its own range


def assign_offsets(topic: str, day: dt.date, values: list[bytes], keys: np.ndarray, partitions: np.ndarray,
                   kafka_ms: np.ndarray, next_offsets: dict[int, int] | None = None) -> list[raw_zone.RawRecord]:
    """Records in (partition, timestamp) order with consecutive offsets per partition, in the day's own range,
    continuing from `next_offsets` (a day made in parts; updated in place)."""
    order = np.lexsort((kafka_ms, partitions))
    base = (day - EPOCH).days * OFFSETS_PER_DAY
    records, seq = [], next_offsets if next_offsets is not None else {}
    for i in order:
        p = int(partitions[i])
        offset = base + seq.get(p, 0)
        seq[p] = seq.get(p, 0) + 1
        key = keys[i] and keys[i].encode()
        records.append(raw_zone.RawRecord(topic, p, offset, int(kafka_ms[i]), key, values[i]))
    return records


def produce(records: list[raw_zone.RawRecord], bootstrap_servers: str) -> None:
    """Send records to Kafka with their key, partition and timestamp (offsets are the broker's)."""
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": bootstrap_servers, "linger.ms": 50,
                         "enable.idempotence": True})
    for r in records:
        while True:
            try:
                producer.produce(r.topic, value=r.value, key=r.key, partition=r.partition, timestamp=r.timestamp_ms)
                break
            except BufferError:  # local queue full: let deliveries drain, then retry
                producer.poll(0.5)
        producer.poll(0)
    remaining = producer.flush(60)
    if remaining:
        raise RuntimeError(f"{remaining} records not acknowledged by {bootstrap_servers}")
