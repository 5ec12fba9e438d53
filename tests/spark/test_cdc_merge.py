"""The CDC job on real raw files and a local lake: bronze change log, silver tables, bad inputs, gates."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal

import pytest

from jobs.cdc import merge as cdc_merge
from jobs.cdc import settings
from jobs.common import storage
from jobs.common.paths import Lake
from jobs.ingest.raw_zone import RawRecord, write_grouped
from tests.cdc_events import BASE_MS, TABLE_SETTINGS, account, mysql, pg, pg_key

DAY = dt.date(2025, 11, 20)
CDC = settings.parse(TABLE_SETTINGS)
TOPIC = "cdc.public.accounts"


def land(lake: Lake, values: list[str | None], topic: str = TOPIC, keys: list[str | None] | None = None,
         partition: int = 0, first_offset: int = 0, day: dt.date = DAY) -> None:
    """Records as the drain writes them, on Kafka date `day`."""
    keys = keys or [None] * len(values)
    base = BASE_MS + (day - DAY).days * 86_400_000
    write_grouped(lake, [RawRecord(topic, partition, first_offset + n, base + n, k and k.encode(),
                                   v and v.encode()) for n, (v, k) in enumerate(zip(values, keys, strict=True))])


def silver(spark, lake: Lake, table: str, kind: str) -> list[dict]:
    rows = spark.read.parquet(lake.table("silver", f"{table}_{kind}")).orderBy("_key", "_pos_from").collect()
    return [r.asDict() for r in rows]


def test_changes_become_current_and_history_with_decoded_types(spark, lake):
    land(lake, [pg("c", 100, account(1)), pg("c", 110, account(2), schema=True),
                pg("u", 120, account(1, "pro", "19.99"), {"id": 1}), pg("d", 130, None, {"id": 2}), None],
         keys=[None, None, None, pg_key(2), pg_key(2)])
    report = cdc_merge.run(spark, lake, DAY, CDC)
    assert report["status"] == "published", report
    current = silver(spark, lake, "accounts", "current")
    assert [(r["id"], r["plan"], r["price"]) for r in current] == [(1, "pro", Decimal("19.99"))]
    assert current[0]["changed_at"] == dt.datetime(2025, 11, 20, 0, 53, 20, 1000)
    assert current[0]["birth_date"] == dt.date(1997, 5, 20)
    history = silver(spark, lake, "accounts", "history")
    assert [(r["_key"], r["plan"], r["opened_by"], r["closed_by"], r["is_current"]) for r in history] == [
        ("[1]", "basic", "c", "u", False), ("[1]", "pro", "u", None, True), ("[2]", "basic", "c", "d", False)]
    assert history[0]["valid_to"] == history[1]["valid_from"]
    bronze = spark.read.parquet(lake.partition("bronze", "cdc_changes", DAY))
    assert bronze.count() == 4
    assert report["counts"]["tombstone"] == 1 and report["quarantined"] == 0


def test_bad_inputs_are_quarantined_flagged_and_counted(spark, lake):
    land(lake, [
        pg("c", 100, account(1)),
        pg("x", 101, account(9)),                                   # unknown op
        pg("c", 102, {"plan": "basic"}),                            # missing primary key
        pg("u", 103, account(5, "pro")),                            # update for a key never seen
        '{"op": "c", "after": {"id": 1',                            # malformed envelope (cut JSON)
        json.dumps({"op": "c", "after": {"id": 7}}),                # an envelope without source
        pg("c", 104, account(6)),
        pg("t", 105),                                               # truncate: closes 1, 5 and 6
        pg("c", 106, account(7)),
        None,                                                       # tombstone for 7 without a delete
        pg("c", 107, account(8), table="invoices"),                 # table without a configured key
    ], keys=[None] * 9 + [pg_key(7), None])
    report = cdc_merge.run(spark, lake, DAY, CDC)
    assert report["status"] == "published", report
    counts = report["counts"]
    assert counts["quarantined:unknown_op"] == 1
    assert counts["quarantined:missing_primary_key"] == 1
    assert counts["quarantined:malformed_json"] == 1
    assert counts["quarantined:malformed_envelope"] == 1
    assert counts["quarantined:no_primary_key_configured"] == 1
    assert counts["quarantined:tombstone_without_delete"] == 1
    assert report["unconfigured_sources"] == ["public.invoices"]
    events = report["tables"]["accounts"]["counts"]["events"]
    assert events["u:update_for_unseen_key"] == 1
    assert events["t:applied"] == 3  # 1, 5 and 6 were live when the truncate came
    current = silver(spark, lake, "accounts", "current")
    assert [r["id"] for r in current] == [7]  # only the row inserted after the truncate
    history = silver(spark, lake, "accounts", "history")
    flagged = [r for r in history if r["_flags"]]
    assert [(r["id"], r["_flags"], r["closed_by"]) for r in flagged] == [(5, ["update_for_unseen_key"], "t")]
    quarantine = spark.read.parquet(lake.partition("quarantine", "cdc_changes", DAY))
    reasons = sorted(r["reason"].split(":")[0] for r in quarantine.collect())
    assert reasons == sorted(["unknown_op", "missing_primary_key", "malformed_json", "malformed_envelope",
                              "no_primary_key_configured", "tombstone_without_delete"])
    assert quarantine.where("reason = 'unknown_op:x'").first()["raw_value"].startswith("{")


def test_rerun_and_replay_change_nothing(spark, lake):
    values = [pg("c", 100, account(1)), pg("u", 120, account(1, "pro"), {"id": 1}), pg("c", 130, account(2))]
    land(lake, values)
    cdc_merge.run(spark, lake, DAY, CDC)
    first = silver(spark, lake, "accounts", "history"), silver(spark, lake, "accounts", "current")
    cdc_merge.run(spark, lake, DAY, CDC)  # the same date again
    land(lake, values, partition=1, day=DAY + dt.timedelta(days=1))  # the same events re-delivered the next day
    report = cdc_merge.run(spark, lake, DAY + dt.timedelta(days=1), CDC)
    assert (silver(spark, lake, "accounts", "history"), silver(spark, lake, "accounts", "current")) == first
    assert report["tables"]["accounts"]["counts"]["events"] == {"c:duplicate": 2, "u:duplicate": 1}


def test_late_event_in_a_later_batch_lands_in_its_place(spark, lake):
    land(lake, [pg("c", 100, account(1)), pg("u", 300, account(1, "gold"), {"id": 1})])
    cdc_merge.run(spark, lake, DAY, CDC)
    land(lake, [pg("u", 200, account(1, "pro"), {"id": 1})], day=DAY + dt.timedelta(days=1))
    cdc_merge.run(spark, lake, DAY + dt.timedelta(days=1), CDC)
    history = silver(spark, lake, "accounts", "history")
    assert [(r["plan"], r["is_current"]) for r in history] == [("basic", False), ("pro", False), ("gold", True)]
    assert [r["plan"] for r in silver(spark, lake, "accounts", "current")] == ["gold"]


def test_a_late_change_older_than_an_earlier_batch_truncate_is_closed_by_it(spark, lake):
    land(lake, [pg("c", 100, account(1)), pg("t", 300), pg("c", 400, account(3))])
    cdc_merge.run(spark, lake, DAY, CDC)
    land(lake, [pg("c", 200, account(2))], day=DAY + dt.timedelta(days=1))  # committed before the truncate
    report = cdc_merge.run(spark, lake, DAY + dt.timedelta(days=1), CDC)
    history = silver(spark, lake, "accounts", "history")
    assert [(r["id"], r["opened_by"], r["closed_by"]) for r in history] == [
        (1, "c", "t"), (2, "c", "t"), (3, "c", None)]
    assert [r["id"] for r in silver(spark, lake, "accounts", "current")] == [3]
    assert report["tables"]["accounts"]["counts"]["events"] == {"c:applied": 1}  # the replayed truncate is not new
    assert [t["pos"] for t in report["tables"]["accounts"]["truncates"]] == [[300]]


def test_new_nullable_column_is_added_and_old_rows_read_null(spark, lake):
    land(lake, [pg("c", 100, account(1)), pg("c", 110, account(2))])
    cdc_merge.run(spark, lake, DAY, CDC)
    land(lake, [pg("u", 200, account(2, "pro", extra={"referral_code": "XYZ"}), {"id": 2}, schema=True)],
         day=DAY + dt.timedelta(days=1))
    report = cdc_merge.run(spark, lake, DAY + dt.timedelta(days=1), CDC)
    assert report["tables"]["accounts"]["new_columns"] == ["referral_code"]
    current = silver(spark, lake, "accounts", "current")
    assert [(r["id"], r["referral_code"]) for r in current] == [(1, None), (2, "XYZ")]
    assert [r["referral_code"] for r in silver(spark, lake, "accounts", "history")] == [None, None, "XYZ"]


def test_mysql_binlog_order_beats_arrival_order(spark, lake):
    values = [mysql("u", 900, {"order_id": 1, "status": "shipped", "placed_at": BASE_MS}, row=1),
              mysql("c", 400, {"order_id": 1, "status": "new", "placed_at": BASE_MS}),
              mysql("u", 900, {"order_id": 1, "status": "paid", "placed_at": BASE_MS}, row=0),
              mysql("u", 100, {"order_id": 1, "status": "returned", "placed_at": BASE_MS}, binlog=4)]
    land(lake, values, topic="cdc.shop.orders")
    report = cdc_merge.run(spark, lake, DAY, CDC)
    assert report["status"] == "published", cdc_merge.failures(report)
    history = silver(spark, lake, "orders", "history")
    assert [r["status"] for r in history] == ["new", "paid", "shipped", "returned"]
    assert history[0]["placed_at"] == dt.datetime(2025, 11, 20, 0, 53, 20)  # MySQL: millis


def test_export_directory_replay(spark, lake, tmp_path):
    export = tmp_path / "export"
    (export / "part").mkdir(parents=True)
    (export / "part" / "events.jsonl").write_text("\n".join([pg("c", 100, account(1)), pg("c", 110, account(2))]))
    (export / "one-event.json").write_text(json.dumps(json.loads(pg("d", 120, None, {"id": 2})), indent=2))
    report = cdc_merge.run(spark, lake, DAY, CDC, export=export.as_uri())
    assert report["status"] == "published"
    assert [r["id"] for r in silver(spark, lake, "accounts", "current")] == [1]


def test_a_failed_gate_publishes_nothing(spark, lake, monkeypatch):
    land(lake, [pg("c", 100, account(1))])
    real_current_of = cdc_merge.scd2.current_of

    def duplicated_current(history):  # a bug that repeats every current row: the current suite must catch it
        current = real_current_of(history)
        return current.unionByName(current)

    monkeypatch.setattr(cdc_merge.scd2, "current_of", duplicated_current)
    report = cdc_merge.run(spark, lake, DAY, CDC)
    assert report["status"] == "rejected"
    assert any("expect_column_values_to_be_unique(_key)" in f for f in cdc_merge.failures(report))
    assert not storage.list_files(lake.table("silver", "accounts_current"))
    assert not storage.list_files(lake.partition("bronze", "cdc_changes", DAY))


@pytest.mark.parametrize("broken", ["nothing: here", "tables: {t: {source: a.t, columns: {id: bigint}}}"])
def test_settings_errors_are_clear(tmp_path, broken):
    path = tmp_path / "cdc.yaml"
    path.write_text(broken)
    with pytest.raises(settings.CdcSettingsError, match="tables|primary_key"):
        settings.load(path)
