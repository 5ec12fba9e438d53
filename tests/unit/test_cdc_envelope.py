"""The Debezium parser on every real event in shared/fixtures/debezium and on the project's own events."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from jobs.cdc import envelope, settings
from tests.cdc_events import TABLE_SETTINGS, account, decimal_b64, mysql, pg

FIXTURES = Path(os.environ.get("PIPELINE_DEBEZIUM_FIXTURES")
                or Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "debezium")
CUSTOMERS = settings.parse({"tables": {
    "customers": {"source": "inventory.customers", "primary_key": ["id"], "columns": {"id": "bigint"}},
    "pg_customers": {"source": "public.customers", "primary_key": ["id"], "columns": {"id": "bigint"}}}})
CDC = settings.parse(TABLE_SETTINGS)
EXPECTED_KINDS = {"schema_change": ["mysql_schema_change.json"], "transaction": ["txmeta"],
                  "message": ["pg_message_m"], "tombstone": ["tombstone_value", "tombstone_wire_value"],
                  "invalid": ["serde-unwrapped.json"]}


def fixture_files() -> list[Path]:
    return sorted(p for p in FIXTURES.rglob("*.json") if p.name != "MANIFEST.json")


@pytest.mark.skipif(not FIXTURES.exists(), reason="shared/fixtures/debezium lives beside the repository")
def test_all_43_fixtures_are_accepted():
    files = fixture_files()
    assert len(files) == 43
    for path in files:
        text = path.read_text()
        if path.name.endswith("key.json"):
            key = envelope.parse_key(text, CUSTOMERS.tables[0])
            assert key is None if "schema_change" in path.name else key.startswith("["), path.name
            continue
        change = envelope.parse(text, CUSTOMERS, topic="cdc.inventory.customers")
        expected = next((k for k, names in EXPECTED_KINDS.items() if any(n in path.name for n in names)), "change")
        assert change.kind == expected, (path.name, change)
        if expected == "change":
            assert change.reason is None and change.op in "cudrt" and change.pos and change.source_ts_us, path.name
            assert change.key or change.op == "t", path.name


def test_snapshot_flag_boolean_or_string_and_legacy_timestamps():
    assert [envelope.snapshot_flag(v) for v in (True, False, "true", "LAST", "incremental", None)] == [
        "true", "false", "true", "last", "incremental", "false"]
    assert envelope.commit_time_us({"ts_sec": 2, "ts_ms": 0}, {}) == 2_000_000
    assert envelope.commit_time_us({"ts_ms": 5, "ts_us": 5001}, {}) == 5001
    assert envelope.commit_time_us({"ts_ms": 0}, {"ts_ms": 7}) == 7000


def test_postgres_encodings_with_and_without_schema_decode_the_same():
    bare = envelope.parse(pg("c", 10, account(1, price="-1234.56")), CDC)
    wrapped = envelope.parse(pg("c", 10, account(1, price="-1234.56"), schema=True), CDC)
    assert json.loads(bare.after) == json.loads(wrapped.after) == {
        "id": 1, "plan": "basic", "price": "-1234.56", "changed_at": "2025-11-20T00:53:20.001000Z",
        "birth_date": "1997-05-20"}
    assert bare.pos == [10] and bare.key == "[1]"


def test_logical_types_and_mysql_positions():
    assert envelope.decode(1_700_000_000_123, {"name": "io.debezium.time.Timestamp"}, None, None) == \
        "2023-11-14T22:13:20.123000Z"
    assert envelope.decode("2023-11-14T23:13:20+01:00", {"name": "io.debezium.time.ZonedTimestamp"}, None, None) \
        == "2023-11-14T22:13:20.000000Z"
    assert envelope.decode({"scale": 3, "value": decimal_b64("1.5", 3)},
                           {"name": "io.debezium.data.VariableScaleDecimal"}, None, None) == "1.500"
    assert envelope.decode(3_600_000_000, {"name": "io.debezium.time.MicroTime"}, None, None) == "01:00:00"
    change = envelope.parse(mysql("u", 154, {"order_id": 7, "status": "paid", "placed_at": 0}, row=2, binlog=12),
                            CDC)
    assert change.pos == [12, 154, 2] and change.snapshot == "false"
    assert json.loads(change.after)["placed_at"] == "1970-01-01T00:00:00.000000Z"  # MySQL DATETIME: millis


@pytest.mark.parametrize(("value", "reason"), [
    ("{not json", "malformed_json"),
    ('["an", "array"]', "malformed_envelope"),
    (pg("z", 1, account(1)), "unknown_op"),
    (pg("c", 1, {"plan": "x"}), "missing_primary_key"),
    (pg("c", 1, account(1), table="unknown"), "no_primary_key_configured"),
    (pg("c", 1, {**account(1), "price": "@@not base64@@"}), "undecodable_value"),
    (pg("u", 1, None), "malformed_envelope"),
])
def test_bad_events_get_a_reason(value, reason):
    change = envelope.parse(value, CDC)
    assert change.kind == "invalid" and change.reason.startswith(reason), change
