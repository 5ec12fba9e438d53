"""The raw landing contract shared by the Kafka drain and the demo generator.

One JSON line per Kafka record: its coordinates (topic, partition, offset), its timestamp,
key and value exactly as received. The value is kept as text when it is valid UTF-8 and
as base64 otherwise, so not a byte is lost; parsing happens later, in Spark.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from collections.abc import Iterable
from dataclasses import dataclass

from jobs.common import storage
from jobs.common.paths import Lake


@dataclass(frozen=True)
class RawRecord:
    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes | None

    @property
    def kafka_date(self) -> dt.date:
        return dt.datetime.fromtimestamp(self.timestamp_ms / 1000, tz=dt.UTC).date()


def _text_or_b64(data: bytes | None) -> tuple[str | None, str | None]:
    if data is None:
        return None, None
    try:
        return data.decode("utf-8"), None
    except UnicodeDecodeError:
        return None, base64.b64encode(data).decode("ascii")


def envelope_line(record: RawRecord) -> bytes:
    key, key_b64 = _text_or_b64(record.key)
    value, value_b64 = _text_or_b64(record.value)
    envelope = {
        "topic": record.topic,
        "partition": record.partition,
        "offset": record.offset,
        "timestamp_ms": record.timestamp_ms,
        "key": key,
        "key_b64": key_b64,
        "value": value,
        "value_b64": value_b64,
    }
    return json.dumps(envelope, ensure_ascii=False, separators=(",", ":")).encode("utf-8") + b"\n"


def write_raw_file(lake: Lake, records: list[RawRecord]) -> str:
    """Write records of one topic, partition and Kafka date as one durable raw file."""
    first, last = records[0], records[-1]
    uri = lake.raw_file(first.topic, first.kafka_date, first.partition, first.offset, last.offset)
    storage.write_atomic(uri, b"".join(envelope_line(r) for r in records))
    return uri


def write_grouped(lake: Lake, records: Iterable[RawRecord]) -> list[str]:
    """Split records (in offset order per partition) by topic, partition and Kafka date, one file each."""
    groups: dict[tuple[str, int, dt.date], list[RawRecord]] = {}
    for record in records:
        groups.setdefault((record.topic, record.partition, record.kafka_date), []).append(record)
    return [write_raw_file(lake, group) for _, group in sorted(groups.items())]
