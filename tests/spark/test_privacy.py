"""Erasure: a person removed from every listed table, the manifests and hidden bookkeeping kept, and kept out
by the suppression list when a day is rebuilt from raw/ or a late change arrives."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

from pyspark.sql import functions as F

from jobs.cdc import changelog
from jobs.clickstream import bronze
from jobs.common import config, storage
from jobs.common.keyed_hash import hmac_sha256
from jobs.common.paths import Lake
from jobs.ingest import raw_zone
from jobs.privacy import erasure
from jobs.privacy import settings as privacy_settings
from tests.conftest import event, record

DAYS = [dt.date(2026, 11, 19), dt.date(2026, 11, 20)]
SETTINGS = privacy_settings.parse({
    "subject_field": "user_id", "retention": {"raw_days": 14, "quarantine_days": 30},
    "tables": [{"path": "bronze/clickstream", "partitions": "dt", "group": "clickstream/dt={dt}", "column": "user_id"},
               {"path": "quarantine/clickstream", "partitions": "dt", "group": "clickstream/dt={dt}",
                "json": ["raw_value"]},
               {"path": "silver/users_history", "group": "cdc", "column": "user_id"},
               {"path": "models/als/versions/*/recommendations", "group": "models/als", "column": "user_id"}]},
    Path("test"))


def build(spark, lake: Lake) -> None:
    records = []
    for n, day in enumerate(DAYS):
        for user in ("u1", "u2"):
            ts = f"{day}T1{n}:00:00Z"
            records.append(record(len(records), event(f"{user}-{day}", ts=ts, user_id=user), kafka_ts=ts))
        records.append(record(len(records), json.dumps({"event_id": f"bad-{day}", "user_id": "u1", "ip": "1.2.3.4"})
                              + " trailing", kafka_ts=f"{day}T12:00:00Z"))
    raw_zone.write_grouped(lake, records)
    for day in DAYS:
        assert bronze.run(spark, lake, day, "clickstream")["status"] == "published"
    history = lake.silver("users", "history")
    spark.createDataFrame([("u1", "a@example.com"), ("u2", "b@example.com")], "user_id string, email string") \
        .write.parquet(history)
    storage.write_atomic(Lake.manifest(history), json.dumps({"watermark": [42], "truncates": []}).encode())
    spark.createDataFrame([('["u9"]', [1], None, None)], "_key string, pos array<bigint>, source_ts timestamp, "
                          "tx_id string").write.parquet(Lake.orphan_deletes(history))
    spark.createDataFrame([("u1", 1, "i1"), ("u2", 1, "i2")], "user_id string, rank int, item_id string") \
        .write.parquet(f"{lake.model_version('als', 'v1')}/recommendations")


def users_in(spark, uri: str, column: str = "user_id") -> set[str]:
    return {r[column] for r in spark.read.parquet(uri).collect()}


def test_a_person_is_erased_everywhere_and_stays_erased(spark, lake):
    build(spark, lake)
    before = json.loads(storage.read_bytes(Lake.manifest(lake.partition("bronze", "clickstream", DAYS[1]))))
    report = erasure.run(spark, lake, DAYS[1], ["u1"], SETTINGS, "erase-1")
    assert report["subjects"] == 1 and "u1" not in json.dumps(report)
    assert report["rows_removed"] == {"bronze/clickstream/dt=2026-11-19": 1, "bronze/clickstream/dt=2026-11-20": 1,
                                      "quarantine/clickstream/dt=2026-11-19": 1,
                                      "quarantine/clickstream/dt=2026-11-20": 1, "silver/users_history": 1,
                                      "models/als/versions/v1/recommendations": 1}
    for day in DAYS:
        assert users_in(spark, lake.partition("bronze", "clickstream", day)) == {"u2"}
        assert spark.read.parquet(lake.partition("quarantine", "clickstream", day)).count() == 0
    assert users_in(spark, lake.silver("users", "history")) == {"u2"}
    assert spark.read.parquet(Lake.orphan_deletes(lake.silver("users", "history"))).count() == 1  # carried over
    assert json.loads(storage.read_bytes(Lake.manifest(lake.silver("users", "history"))))["watermark"] == [42]
    after = json.loads(storage.read_bytes(Lake.manifest(lake.partition("bronze", "clickstream", DAYS[1]))))
    assert after["input_fingerprint"] == before["input_fingerprint"] and after["erasure"]["rows_removed"] == 1

    tokens = [r["token"] for r in spark.read.parquet(lake.erased_users()).collect()]
    expected = spark.range(1).select(hmac_sha256(F.lit("u1"), config.ip_hash_key())).first()[0]
    assert tokens == [expected]  # the suppression list holds a keyed token, not the id

    rebuilt = bronze.run(spark, lake, DAYS[1], "clickstream", full_refresh=True)  # a rebuild from raw/
    assert rebuilt["counts"]["excluded_erased"] == 2  # the event and the bad record, kept nowhere
    assert users_in(spark, lake.partition("bronze", "clickstream", DAYS[1])) == {"u2"}
    assert spark.read.parquet(lake.partition("quarantine", "clickstream", DAYS[1])).count() == 0

    again = erasure.run(spark, lake, DAYS[1], ["u1"], SETTINGS, "erase-2")  # nothing left to remove
    assert again["rows_removed"] == {}


def test_a_late_change_about_an_erased_person_is_kept_nowhere(spark, lake):
    tokens = spark.range(1).select(hmac_sha256(F.lit("u1"), config.ip_hash_key()).alias("token"))
    parsed = spark.createDataFrame(
        [("change", None, '{"user_id":"u1","plan":"pro"}', None), ("change", None, None, '{"user_id":"u1"}'),
         ("change", None, '{"user_id":"u2"}', None)], "kind string, reason string, after string, before string")
    kinds = [r["kind"] for r in changelog.exclude_erased(parsed, tokens, config.ip_hash_key(), "user_id").collect()]
    assert sorted(kinds) == ["change", "erased", "erased"]


def test_deleted_users_of_a_day_come_from_the_history(spark, lake):
    spark.createDataFrame([("u1", "d", dt.datetime(2026, 11, 20, 9)), ("u2", "u", dt.datetime(2026, 11, 20, 9)),
                           ("u3", "d", dt.datetime(2026, 11, 19, 9)), ("u4", None, None)],
                          "user_id string, closed_by string, valid_to timestamp") \
        .write.parquet(lake.silver("users", "history"))
    assert erasure.deleted_users(spark, lake, DAYS[1], "user_id") == ["u1"]
