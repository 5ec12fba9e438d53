"""CDC events as Debezium really sends them (hand-built from its documented shapes): an unchanged TOAST column,
many changes of one key at one position, a value that does not cast, heartbeats."""

from __future__ import annotations

import json

from jobs.cdc import envelope
from jobs.cdc import merge as cdc_merge
from tests.cdc_events import account, pg
from tests.spark.test_cdc_merge import CDC, DAY, land, silver


def with_transaction(event: str, order: int) -> str:
    payload = json.loads(event)
    payload["transaction"] = {"id": "771:1", "total_order": order, "data_collection_order": order}
    return json.dumps(payload)


def test_an_unchanged_toast_column_keeps_the_previous_value(spark, lake):
    land(lake, [pg("c", 100, account(1, plan="a very long plan text")),
                pg("u", 110, account(1, plan=envelope.UNAVAILABLE, price="19.99"), {"id": 1}),
                pg("u", 120, account(1, plan=envelope.UNAVAILABLE, price="29.99"), {"id": 1})])
    assert cdc_merge.run(spark, lake, DAY, CDC)["status"] == "published"
    history = silver(spark, lake, "accounts", "history")
    assert [(str(r["price"]), r["plan"]) for r in history] == [
        ("9.99", "a very long plan text"), ("19.99", "a very long plan text"), ("29.99", "a very long plan text")]
    assert silver(spark, lake, "accounts", "current")[0]["plan"] == "a very long plan text"


def test_many_changes_of_one_key_at_one_position_keep_their_order_and_none_is_a_duplicate(spark, lake):
    """A create and 30 updates of one key in one transaction, all at one LSN: 31 versions, the last one live."""
    events = [with_transaction(pg("c", 100, account(1, price="1.00")), 1)]
    events += [with_transaction(pg("u", 100, account(1, price=f"{n}.00"), {"id": 1}), n) for n in range(2, 32)]
    land(lake, [events[0], *reversed(events[1:])])  # arrival order does not matter with the transaction's order
    report = cdc_merge.run(spark, lake, DAY, CDC)
    counts = report["tables"]["accounts"]["counts"]["events"]
    assert counts == {"c:applied": 1, "u:applied": 30}
    assert str(silver(spark, lake, "accounts", "current")[0]["price"]) == "31.00"
    assert len(silver(spark, lake, "accounts", "history")) == 31


def test_without_transaction_metadata_arrival_order_decides_and_a_redelivery_is_still_a_duplicate(spark, lake):
    events = [pg("u", 100, account(1, price=f"{n}.00"), {"id": 1}) for n in range(1, 6)]
    land(lake, [pg("c", 90, account(1)), *events, events[2]])  # arrival order; the third update re-delivered
    counts = cdc_merge.run(spark, lake, DAY, CDC)["tables"]["accounts"]["counts"]["events"]
    assert counts == {"c:applied": 1, "u:applied": 5, "u:duplicate": 1}
    assert str(silver(spark, lake, "accounts", "current")[0]["price"]) == "5.00"


def test_a_value_that_does_not_cast_is_quarantined_not_nulled(spark, lake):
    bad = account(2)
    bad["birth_date"] = "not a date"  # the configured type is date; without a schema nothing else says otherwise
    land(lake, [pg("c", 100, account(1)), pg("c", 110, bad)])
    report = cdc_merge.run(spark, lake, DAY, CDC)
    assert report["counts"]["quarantined:undecodable_value"] == 1
    quarantine = spark.read.parquet(lake.partition("quarantine", "cdc_changes", DAY)).collect()
    assert [r["reason"] for r in quarantine] == ["undecodable_value:birth_date"]
    assert [r["id"] for r in silver(spark, lake, "accounts", "current")] == [1]


def test_heartbeats_and_transaction_records_are_counted_not_quarantined(spark, lake):
    land(lake, [json.dumps({"ts_ms": 1763600000000}),
                json.dumps({"schema": {"type": "struct", "name": "io.debezium.connector.common.Heartbeat",
                                       "fields": [{"field": "ts_ms", "type": "int64"}]},
                            "payload": {"ts_ms": 1763600000000}}),
                json.dumps({"status": "BEGIN", "id": "771:1", "event_count": None, "data_collections": None}),
                pg("c", 100, account(1))])
    report = cdc_merge.run(spark, lake, DAY, CDC)
    assert report["counts"] == {"change:c": 1, "heartbeat": 2, "transaction": 1}
    assert report["quarantined"] == 0


def test_the_events_schema_wins_over_the_configured_type_and_the_difference_is_said(spark, lake):
    """decimal.handling.mode=string: the schema says string, cdc.yaml says decimal(10,2) (base64 without a
    schema). `1000` is valid base64 too; read by the configuration it would be -26672.12."""
    event = json.loads(pg("c", 100, account(1), schema=True))
    after = next(f for f in event["schema"]["fields"] if f["field"] == "after")
    price = next(f for f in after["fields"] if f["field"] == "price")
    price.clear()
    price.update({"field": "price", "type": "string", "optional": True})
    event["payload"]["after"]["price"] = "1000"
    land(lake, [json.dumps(event)])
    report = cdc_merge.run(spark, lake, DAY, CDC)
    assert str(silver(spark, lake, "accounts", "current")[0]["price"]) == "1000.00"
    assert report["tables"]["accounts"]["schema_disagreements"] == {"price": ["string"]}
