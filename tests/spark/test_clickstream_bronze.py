"""Transforms and the whole job on small hand-made raw files, bad input first."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import re
from pathlib import Path

import pytest
from pyspark.sql import functions as F

from jobs.clickstream import bronze
from jobs.clickstream import transforms as job
from jobs.common import storage
from jobs.common.spark import LakeFS, load_schema, read_raw
from jobs.ingest import raw_zone
from tests.conftest import event, record

DAY = dt.date(2026, 11, 20)
RULES = job.Rules(["page_view", "search", "click", "play", "add_to_cart", "purchase"],
                  ["event_id", "event_type", "event_ts", "user_id"], late_days=1, max_clock_skew_minutes=60)


def day_rows(spark, lake, records):
    raw_zone.write_grouped(lake, records)
    dirs = bronze.raw_files(LakeFS(spark), lake, "clickstream", DAY, RULES.late_days)
    schema = load_schema("clickstream_event")
    classified = job.classify(job.parse_events(read_raw(spark, dirs), schema), RULES, schema)
    return job.resolve_duplicates(classified.where(F.col("attributed_dt") == F.lit(DAY)))


def reasons(rows) -> dict[int, str | None]:
    return {r["kafka_offset"]: r["reason"] for r in rows.select("kafka_offset", "reason").collect()}


def test_each_kind_of_bad_record_is_quarantined_with_its_reason(spark, lake):
    records = [
        record(1, event("ok")),
        record(2, '{"event_id": "broken", "event_type": '),
        record(3, event("no-user", user_id=...)),
        record(4, event("bad-rev", event_type="purchase", revenue="12,50")),
        record(5, event("bad-type", event_type="teleport")),
        record(6, event("neg", event_type="purchase", revenue=-3.0)),
        record(7, event("future", ts="2031-11-20T10:00:00Z")),
        record(8, None),
        record(9, b"\xff\xfe not utf8"),
        record(10, "[1, 2, 3]"),
        record(11, event("late", ts="2026-11-18T10:00:00Z")),
        record(12, event("null-user", user_id=None, event_type=None)),
    ]
    got = reasons(day_rows(spark, lake, records))
    assert got == {
        1: None, 2: "invalid_json", 3: "missing_field:user_id", 4: "wrong_type:revenue",
        5: "invalid_event_type", 6: "negative_revenue", 7: "future_timestamp", 8: "empty_value",
        9: "invalid_encoding", 10: "invalid_json", 11: "late_beyond_window",
        12: "missing_field:event_type,user_id",
    }


def test_duplicates_within_and_across_batches(spark, lake):
    records = [
        record(1, event("a")), record(2, event("a")),          # re-delivered within a batch
        record(3, event("b")),
    ]
    raw_zone.write_grouped(lake, [record(4, event("b"), kafka_ts="2026-11-21T01:00:00Z")])  # later batch
    # the same Kafka record landed twice (a retried drain range written into another file)
    retried = raw_zone.RawRecord("clickstream", 0, 1, records[0].timestamp_ms, b"u1", records[0].value)
    raw_zone.write_raw_file(lake, [retried, records[1]])
    rows = day_rows(spark, lake, records)
    outcomes = {(r["kafka_offset"], r["outcome"]) for r in
                rows.select("kafka_offset", job.outcome().alias("outcome")).collect()}
    assert outcomes == {
        (1, "bronze"), (1, "reread_collapsed"), (2, "quarantined:duplicate_event_id"),
        (2, "reread_collapsed"), (3, "bronze"), (4, "quarantined:duplicate_event_id"),
    }
    assert job.to_bronze(rows, "k").count() == 2


def test_records_are_attributed_to_exactly_one_day(spark, lake):
    records = [
        record(1, event("late-arrival", ts="2026-11-20T23:59:00Z"), kafka_ts="2026-11-21T00:00:30Z"),
        record(2, event("next-day", ts="2026-11-21T00:10:00Z"), kafka_ts="2026-11-21T00:10:01Z"),
        record(3, "not json", kafka_ts="2026-11-21T00:10:01Z"),    # belongs to the 21st's run
        record(4, "not json either", kafka_ts="2026-11-20T08:00:00Z"),
        record(5, event("skewed", ts="2026-11-20T00:20:00Z"), kafka_ts="2026-11-19T23:59:00Z"),
    ]
    assert reasons(day_rows(spark, lake, records)) == {1: None, 4: "invalid_json", 5: None}


def test_no_consent_is_excluded_and_ip_is_minimised(spark, lake):
    records = [record(1, event("yes", ip="203.0.113.77")), record(2, event("no", consent=False)),
               record(3, event("unknown", consent=None)),
               record(4, event("v6", ip="2001:DB8:85a3:8d3:1319:8a2e:370:7348"))]
    rows = day_rows(spark, lake, records)
    assert job.count_outcomes(rows) == {"bronze": 2, "excluded_no_consent": 2}
    bronze = job.to_bronze(rows, "secret-1")
    assert "ip" not in bronze.columns
    got = {r["event_id"]: (r["ip_prefix"], r["ip_hash"]) for r in bronze.collect()}
    assert got["yes"][0] == "203.0.0.0/16" and got["v6"][0] == "2001:db8::/32"
    assert got["yes"][1] == hmac.new(b"secret-1", b"203.0.113.77", hashlib.sha256).hexdigest()  # a real HMAC
    other_key = {r["event_id"]: r["ip_hash"] for r in job.to_bronze(rows, "secret-2").collect()}
    assert got["yes"][1] != other_key["yes"] and len(got["yes"][1]) == 64
    assert bronze.columns == job.BRONZE_COLUMNS


def test_the_key_and_a_prefix_no_longer_give_the_ip_back(spark, lake):
    """The issue's attack: with the key, try every host of the stored prefix. With a /24 beside the hash 182 of
    200 IPs came back; with a /16 the 256 hosts of any /24 guess find none (65,536 candidates per address)."""
    ips = [f"198.51.{n % 7}.{n}" for n in range(1, 60)]
    rows = day_rows(spark, lake, [record(n, event(f"e{n}", ip=ip)) for n, ip in enumerate(ips)])
    published = job.to_bronze(rows, "secret-1").select("ip_prefix", "ip_hash").collect()
    recovered = 0
    for row in published:
        network = row["ip_prefix"].split("/")[0].rsplit(".", 2)[0]  # what the prefix tells: 198.51
        guesses = (f"{network}.0.{host}" for host in range(256))  # a /24's worth of tries
        recovered += any(hmac.new(b"secret-1", g.encode(), hashlib.sha256).hexdigest() == row["ip_hash"]
                         for g in guesses)
    assert {r["ip_prefix"] for r in published} == {"198.51.0.0/16"} and recovered == len([i for i in ips
                                                                                           if ".0." in i])


def test_quarantine_keeps_no_ip_no_user_agent_and_nothing_of_events_without_consent(spark, lake):
    records = [record(1, event("bad-type", event_type="teleport", ip="203.0.113.9", user_agent="Firefox/133")),
               record(2, event("no-consent-bad", event_type="teleport", consent=False, ip="203.0.113.10")),
               record(3, '{"event_id": "cut", "ip": "203.0.113.11", "user_agent": "Safari \\"17\\"", "user'),
               record(4, event("huge", query="x" * 5000, event_type="search"))]
    rows = day_rows(spark, lake, records)
    quarantine = {r["kafka_offset"]: r for r in job.to_quarantine(rows).collect()}
    assert {o: r["reason"] for o, r in quarantine.items()} == {
        1: "invalid_event_type", 2: "invalid_event_type", 3: "invalid_json", 4: "field_too_long:query"}
    text = " ".join(r["raw_value"] or "" for r in quarantine.values())
    assert "203.0.113" not in text and "Firefox" not in text and "Safari" not in text
    assert '"ip": "<redacted>"' in quarantine[1]["raw_value"] and '"event_id": "bad-type"' in quarantine[1]["raw_value"]
    assert quarantine[2]["raw_value"] is None  # said no to consent: coordinates only, the text stays in raw/
    assert len(quarantine[4]["raw_value"]) <= job.QUARANTINE_TEXT_CHARS + 10 and quarantine[4]["raw_value"].endswith(
        "<cut>")


def test_suite_columns_match_the_job_output():
    suite = json.loads(open("include/expectations/clickstream_bronze.json").read())
    ordered = next(e for e in suite["expectations"] if e["type"] == "expect_table_columns_to_match_ordered_list")
    assert ordered["kwargs"]["column_list"] == job.BRONZE_COLUMNS


# ---------------------------------------------------------------- the whole job

def demo_day(lake, n_good=40, extra=()):
    records = [record(i, event(f"e{i}", ts=f"2026-11-20T{i % 24:02d}:00:00Z"),
                      kafka_ts=f"2026-11-20T{i % 24:02d}:00:05Z", partition=i % 2) for i in range(n_good)]
    raw_zone.write_grouped(lake, [*records, *extra])


def bronze_rows(spark, lake):
    df = spark.read.parquet(lake.partition("bronze", "clickstream", DAY))
    return sorted(tuple(r) for r in df.collect())


def test_run_publishes_with_manifest_and_rerun_is_identical(spark, lake):
    demo_day(lake, extra=[record(100, "{oops", kafka_ts="2026-11-20T12:00:00Z")])
    first = bronze.run(spark, lake, DAY, "clickstream")
    assert first["status"] == "published"
    assert first["counts"]["bronze"] == 40 and first["counts"]["quarantined:invalid_json"] == 1
    assert first["counts"]["raw_records"] == 41
    assert first["validation"]["success"] and first["validation"]["data_docs"].endswith("index.html")
    rows = bronze_rows(spark, lake)

    assert bronze.run(spark, lake, DAY, "clickstream")["status"] == "up_to_date"
    again = bronze.run(spark, lake, DAY, "clickstream", full_refresh=True)
    assert again["status"] == "published" and again["run_id"] != first["run_id"]
    assert bronze_rows(spark, lake) == rows  # same rows, no duplicates
    quarantine = spark.read.parquet(lake.partition("quarantine", "clickstream", DAY))
    assert quarantine.count() == 1
    manifest = json.loads(LakeFS(spark).read_text(lake.manifest(lake.partition("bronze", "clickstream", DAY))))
    assert manifest["run_id"] == again["run_id"] and manifest["code_version"]
    for zone in ("bronze", "quarantine"):  # nothing left behind: no staging, no replaced copies
        assert LakeFS(spark).list_dirs(lake.table(zone, "clickstream")) == [
            lake.partition(zone, "clickstream", DAY).replace("file:///", "file:/")]


def test_gx_failure_publishes_nothing_and_writes_data_docs(spark, lake):
    demo_day(lake)
    assert bronze.run(spark, lake, DAY, "clickstream")["status"] == "published"
    before = bronze_rows(spark, lake)
    quarantine = lake.partition("quarantine", "clickstream", DAY)
    quarantine_files = storage.list_files(quarantine)
    assert quarantine_files
    # yesterday published 10,000 rows: today's 41 is far below the row-count bound
    yesterday = lake.partition("bronze", "clickstream", DAY - dt.timedelta(days=1))
    storage.write_atomic(lake.manifest(yesterday), json.dumps({"counts": {"bronze": 10_000}}).encode())
    raw_zone.write_grouped(lake, [record(500, event("new"), kafka_ts="2026-11-20T10:00:02Z")])

    result = bronze.run(spark, lake, DAY, "clickstream")
    assert result["status"] == "rejected"
    assert any("expect_table_row_count_to_be_between" in f for f in result["validation"]["failures"])
    assert bronze_rows(spark, lake) == before  # the published partition is untouched
    assert storage.list_files(quarantine) == quarantine_files  # nor its quarantine (same files)
    assert spark.read.parquet(f"{result['rejected_batch']}/bronze").count() == 41
    assert LakeFS(spark).exists(f"{result['rejected_batch']}/quarantine")
    docs = Path(result["validation"]["data_docs"].removeprefix("file://")).parent
    assert (docs / "index.html").is_file()
    page = " ".join(re.sub(r"<[^>]+>", " ", next(docs.glob("validations/**/*.html")).read_text()).split())
    assert "Must have greater than or equal to 5000 and less than or equal to 20001 rows" in page


def test_missing_raw_input_is_a_clear_error(spark, lake):
    with pytest.raises(FileNotFoundError, match="no raw files for clickstream around 2026-11-20"):
        bronze.run(spark, lake, DAY, "clickstream")
