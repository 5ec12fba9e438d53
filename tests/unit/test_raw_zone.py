import base64
import json
from pathlib import Path

from jobs.common import storage
from jobs.ingest import raw_zone
from jobs.ingest.raw_zone import RawRecord


def test_envelope_keeps_coordinates_and_text_value():
    line = raw_zone.envelope_line(RawRecord("t", 2, 41, 1795132975618, b"k", b'{"a":1}'))
    env = json.loads(line)
    assert (env["topic"], env["partition"], env["offset"], env["timestamp_ms"]) == ("t", 2, 41, 1795132975618)
    assert env["value"] == '{"a":1}' and env["value_b64"] is None and env["key"] == "k"


def test_envelope_keeps_non_utf8_bytes_as_base64():
    raw = b"\xff\xfe{bad"
    env = json.loads(raw_zone.envelope_line(RawRecord("t", 0, 0, 0, None, raw)))
    assert env["value"] is None and base64.b64decode(env["value_b64"]) == raw


def test_tombstone_has_neither_value():
    env = json.loads(raw_zone.envelope_line(RawRecord("t", 0, 0, 0, b"k", None)))
    assert env["value"] is None and env["value_b64"] is None


def test_write_grouped_splits_by_topic_partition_and_kafka_date(lake, tmp_path: Path):
    day1, day2 = 1795132800000, 1795132800000 + 86_400_000  # 2026-11-20, 2026-11-21 00:00 UTC
    records = [RawRecord("clickstream", 0, 10, day1 + 5, None, b"a"),
               RawRecord("clickstream", 0, 11, day2 + 5, None, b"b"),
               RawRecord("clickstream", 1, 7, day1 + 9, None, b"c"),
               RawRecord("cdc.public.users", 0, 10, day1 + 6, None, b"d")]
    files = raw_zone.write_grouped(lake, records)
    assert [f.rsplit("/", 4)[1:] for f in files] == [
        ["cdc.public.users", "kafka_date=2026-11-20", "partition=0",
         "cdc.public.users-0-00000000000000000010-00000000000000000010.jsonl"],
        ["clickstream", "kafka_date=2026-11-20", "partition=0",
         "clickstream-0-00000000000000000010-00000000000000000010.jsonl"],
        ["clickstream", "kafka_date=2026-11-21", "partition=0",
         "clickstream-0-00000000000000000011-00000000000000000011.jsonl"],
        ["clickstream", "kafka_date=2026-11-20", "partition=1",
         "clickstream-1-00000000000000000007-00000000000000000007.jsonl"],
    ]
    assert json.loads(storage.read_bytes(files[2]))["value"] == "b"
    leftovers = [p for p in (tmp_path / "lake").rglob("*") if p.name.startswith(".")]
    assert leftovers == []  # write aside + rename leaves no temp files behind


def test_rewriting_the_same_range_replaces_the_file(lake):
    records = [RawRecord("clickstream", 0, 1, 1795132800000, None, b"x")]
    first = raw_zone.write_grouped(lake, records)
    second = raw_zone.write_grouped(lake, records)
    assert first == second
    assert storage.list_files(lake.raw_topic("clickstream"), ".jsonl") == first
