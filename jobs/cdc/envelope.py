"""Debezium change events -> one normalised change, whatever shape the connector wrote.

Accepted shapes: the JSON converter with or without the `schema`/`payload` wrapper; ops c, u,
d, r and t; tombstones (a null value, or `{"schema": null, "payload": null}`); transaction
metadata, schema-change and logical-message (`op=m`) records, which are recognised and
counted but carry no row. Values are decoded from Debezium's encodings (PostgreSQL and MySQL
times, dates and decimals) by the field's logical type in the event schema, or without a
schema by the column type in `include/cdc.yaml`, and written as canonical JSON: timestamps as
ISO-8601 UTC, dates as `YYYY-MM-DD`, decimals as exact strings.

The position orders changes as the source committed them: `[lsn]` for PostgreSQL and
`[binlog file number, binlog position, row]` for MySQL. Arrival order and `ts_ms` are never
used for ordering.

Pure Python (no Spark): the Spark job maps it over raw records, tests call it directly.
"""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import json
import re
from dataclasses import asdict, dataclass
from typing import Any

from jobs.cdc.settings import Column, Settings, Table

CHANGE_OPS = {"c", "u", "d", "r", "t"}
EPOCH = dt.datetime(1970, 1, 1)
TIMESTAMP_UNITS = {"millis": 1_000, "micros": 1, "nanos": 0.001}
LOGICAL_TIMESTAMPS = {
    "io.debezium.time.Timestamp": "millis",
    "org.apache.kafka.connect.data.Timestamp": "millis",
    "io.debezium.time.MicroTimestamp": "micros",
    "io.debezium.time.NanoTimestamp": "nanos",
}
LOGICAL_TIMES = {"io.debezium.time.Time": 1_000, "org.apache.kafka.connect.data.Time": 1_000,
                 "io.debezium.time.MicroTime": 1, "io.debezium.time.NanoTime": 0.001}
LOGICAL_DATES = {"io.debezium.time.Date", "org.apache.kafka.connect.data.Date"}
CONNECT_TYPES = {"int8": "bigint", "int16": "bigint", "int32": "bigint", "int64": "bigint",
                 "float32": "double", "float64": "double", "boolean": "boolean", "string": "string",
                 "bytes": "string"}
#: Default encoding of a schemaless timestamp column, per connector (Debezium's adaptive mode).
DEFAULT_TIMESTAMP_UNIT = {"postgresql": "micros", "mysql": "millis"}


class DecodeError(ValueError):
    """A value that does not match its declared encoding."""


@dataclass(frozen=True)
class Change:
    """One record as the change log stores it; `reason` set means quarantined."""

    kind: str  # change | tombstone | transaction | heartbeat | schema_change | message | invalid
    reason: str | None = None
    table: str | None = None
    source: str | None = None
    op: str | None = None
    key: str | None = None
    pos: list[int] | None = None
    source_ts_us: int | None = None
    tx_id: str | None = None
    tx_order: int | None = None
    snapshot: str | None = None
    connector: str | None = None
    before: str | None = None
    after: str | None = None
    column_types: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# ---------------------------------------------------------------- value decoding

#: What the PostgreSQL connector sends for an unchanged TOASTed column of an update (REPLICA IDENTITY DEFAULT):
#: "the value is the one before" (`jobs/cdc/scd2.py` keeps the previous version's value).
UNAVAILABLE = "__debezium_unavailable_value"


def _timestamp_iso(micros: int | float) -> str:
    return (EPOCH + dt.timedelta(microseconds=int(micros))).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _iso_to_utc(text: str) -> str:
    parsed = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(dt.UTC).replace(tzinfo=None)
    return parsed.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _unscaled(b64: str, scale: int) -> str:
    raw = base64.b64decode(b64, validate=True)
    return str(decimal.Decimal(int.from_bytes(raw, "big", signed=True)).scaleb(-scale))


def _decimal_scale(type_: str) -> int:
    match = re.search(r",\s*(\d+)\)", type_)
    return int(match.group(1)) if match else 0


def decode(value: Any, field: dict[str, Any] | None, column: Column | None, connector: str | None) -> Any:
    """One value from Debezium's wire encoding to its canonical JSON form.

    The event schema's logical type wins; without a schema the configured column type decides.
    """
    if value is None:
        return None
    logical = (field or {}).get("name")
    try:
        if logical in LOGICAL_TIMESTAMPS:
            return _timestamp_iso(int(value) * TIMESTAMP_UNITS[LOGICAL_TIMESTAMPS[logical]])
        if logical == "io.debezium.time.ZonedTimestamp":
            return _iso_to_utc(value)
        if logical in LOGICAL_DATES:
            return (dt.date(1970, 1, 1) + dt.timedelta(days=int(value))).isoformat()
        if logical in LOGICAL_TIMES:
            return str((EPOCH + dt.timedelta(microseconds=int(value) * LOGICAL_TIMES[logical])).time())
        if logical == "org.apache.kafka.connect.data.Decimal":
            return _unscaled(value, int((field.get("parameters") or {}).get("scale", 0)))
        if logical == "io.debezium.data.VariableScaleDecimal":
            return _unscaled(value["value"], int(value["scale"]))
        if logical is None and field is None and column is not None:
            return _decode_by_column(value, column, connector)
    except (ValueError, TypeError, KeyError, ArithmeticError) as exc:
        raise DecodeError(f"{logical or (column and column.type)}: cannot decode {value!r}: {exc}") from None
    return value


def _decode_by_column(value: Any, column: Column, connector: str | None) -> Any:
    if column.type == "timestamp":
        if isinstance(value, str):
            return _iso_to_utc(value)
        unit = column.encoding or DEFAULT_TIMESTAMP_UNIT.get(connector or "", "micros")
        return _timestamp_iso(int(value) * TIMESTAMP_UNITS[unit])
    if column.type == "date":
        return value if isinstance(value, str) else (dt.date(1970, 1, 1) + dt.timedelta(days=int(value))).isoformat()
    if column.type.startswith("decimal"):
        if isinstance(value, str) and column.encoding != "string":
            return _unscaled(value, _decimal_scale(column.type))
        return str(decimal.Decimal(str(value)))
    return value


def infer_type(value: Any, field: dict[str, Any] | None) -> str:
    """The Spark type a column not in the settings gets: from the event schema, else the JSON value."""
    if field:
        logical = field.get("name")
        if logical in LOGICAL_TIMESTAMPS or logical == "io.debezium.time.ZonedTimestamp":
            return "timestamp"
        if logical in LOGICAL_DATES:
            return "date"
        if logical == "org.apache.kafka.connect.data.Decimal":
            return f"decimal(38,{int((field.get('parameters') or {}).get('scale', 0))})"
        return CONNECT_TYPES.get(field.get("type"), "string")
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "bigint"
    if isinstance(value, float):
        return "double"
    return "string"


# ---------------------------------------------------------------- envelope

def _loads(value: str | bytes | None) -> Any:
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode("utf-8")
    return json.loads(value)


def _unwrap(doc: Any) -> tuple[Any, dict[str, Any] | None]:
    """(payload, schema): the JSON converter's wrapper is optional."""
    if isinstance(doc, dict) and set(doc) == {"schema", "payload"}:
        return doc["payload"], doc["schema"] if isinstance(doc["schema"], dict) else None
    return doc, None


def _fields(schema: dict[str, Any] | None, name: str) -> dict[str, dict[str, Any]] | None:
    """The value schema's fields of `before`/`after`, by column name (None without a schema)."""
    if not schema:
        return None
    part = next((f for f in schema.get("fields") or [] if f.get("field") == name), None)
    return {f["field"]: f for f in (part or {}).get("fields") or []}


def position(source: dict[str, Any]) -> list[int] | None:
    """Commit order in the source: PostgreSQL `[lsn]`, MySQL `[file number, pos, row]`."""
    if source.get("lsn") is not None:
        return [int(source["lsn"])]
    if source.get("file") and source.get("pos") is not None:
        number = re.search(r"(\d+)$", str(source["file"]))
        if number:
            return [int(number.group(1)), int(source["pos"]), int(source.get("row") or 0)]
    return None


def snapshot_flag(value: Any) -> str:
    """`source.snapshot` is a boolean in some versions and a string (true/false/last/incremental) in others."""
    if value is None:
        return "false"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value).lower()


def commit_time_us(source: dict[str, Any], payload: dict[str, Any]) -> int | None:
    """When the source committed the change: `ts_us` (>= 2.6), `ts_ms`, legacy `ts_sec`; else
    (0 or absent, as in some 0.x events) when Debezium processed it."""
    for block in (source, payload):
        for name, scale in (("ts_us", 1), ("ts_ms", 1_000), ("ts_sec", 1_000_000)):
            if block.get(name):
                return int(block[name]) * scale
    return None


def _tx_id(source: dict[str, Any]) -> str | None:
    tx = source.get("txId") if source.get("txId") is not None else source.get("gtid")
    return None if tx is None else str(tx)


def _tx_order(payload: dict[str, Any]) -> int | None:
    """The event's place in its transaction (`transaction.total_order`, with transaction metadata enabled)."""
    order = (payload.get("transaction") or {}).get("total_order") if isinstance(payload.get("transaction"),
                                                                                 dict) else None
    return int(order) if isinstance(order, int) or (isinstance(order, str) and order.isdigit()) else None


def _source_name(source: dict[str, Any]) -> str | None:
    schema_or_db = source.get("schema") or source.get("db")
    return f"{schema_or_db}.{source['table']}" if schema_or_db and source.get("table") else None


def _image(row: Any, fields: dict[str, dict[str, Any]] | None, table: Table,
           connector: str | None) -> tuple[dict[str, Any] | None, dict[str, str]]:
    if row is None:
        return None, {}
    if not isinstance(row, dict):
        raise DecodeError(f"row image is a {type(row).__name__}, not an object")
    decoded, types = {}, {}
    for name, value in row.items():
        field = (fields or {}).get(name)
        column = table.column(name)
        decoded[name] = decode(value, field, column, connector)
        if column is None or (field is not None and _family(infer_type(value, field)) != _family(column.type)):
            types[name] = infer_type(value, field)  # a new column, or the event's schema disagrees (and wins)
    return decoded, types


def _family(spark_type: str) -> str:
    """Types that hold the same values: decimal(p,s) of any p and s, the integers."""
    return "decimal" if spark_type.startswith("decimal") else {"int": "bigint"}.get(spark_type, spark_type)


def primary_key(table: Table, *images: dict[str, Any] | None) -> str | None:
    """The key as canonical JSON (a list in primary-key order), from the first image that has it all."""
    for image in images:
        if image and all(image.get(c) is not None for c in table.primary_key):
            return json.dumps([image[c] for c in table.primary_key], separators=(",", ":"))
    return None


def parse_key(key: str | bytes | None, table: Table) -> str | None:
    """A Kafka record key (`{"id": 1}`, with or without the schema wrapper) -> canonical key."""
    try:
        payload, _ = _unwrap(_loads(key))
    except (ValueError, UnicodeDecodeError):
        return None
    return primary_key(table, payload if isinstance(payload, dict) else None)


def _dumps(obj: Any) -> str | None:
    return None if obj is None else json.dumps(obj, separators=(",", ":"), sort_keys=True)


def parse(value: str | bytes | None, settings: Settings, key: str | bytes | None = None,
          topic: str | None = None) -> Change:
    """One Kafka record (or one exported event) -> a Change; never raises on bad input."""
    try:
        doc = _loads(value)
    except (ValueError, UnicodeDecodeError) as exc:
        return Change("invalid", f"malformed_json: {str(exc)[:80]}")
    payload, schema = _unwrap(doc)
    topic_table = settings.by_topic(topic) if topic else None
    if payload is None:
        return Change("tombstone", table=topic_table and topic_table.name,
                      key=topic_table and parse_key(key, topic_table))
    if not isinstance(payload, dict):
        return Change("invalid", f"malformed_envelope: a {type(payload).__name__}, not an object")
    if payload.get("status") in ("BEGIN", "END") and "id" in payload:
        return Change("transaction", tx_id=str(payload["id"]))
    if set(payload) == {"ts_ms"} or str((schema or {}).get("name", "")).endswith(".Heartbeat"):
        return Change("heartbeat")  # the connector's liveness signal (heartbeat.interval.ms), no row
    if "ddl" in payload or "tableChanges" in payload:
        return Change("schema_change")
    op = payload.get("op")
    if op == "m":
        return Change("message")
    source = payload.get("source")
    if op is None or not isinstance(source, dict):
        return Change("invalid", "malformed_envelope: no op/source (not a Debezium change event; "
                                 "an ExtractNewRecordState row or another format?)")
    if op not in CHANGE_OPS:
        return Change("invalid", f"unknown_op:{str(op)[:20]}")
    return _change(payload, schema, source, op, settings, key, topic_table)


def _change(payload: dict[str, Any], schema: dict[str, Any] | None, source: dict[str, Any], op: str,
            settings: Settings, key: str | bytes | None, topic_table: Table | None) -> Change:
    source_name = _source_name(source)
    table = settings.by_source(source_name) if source_name else topic_table  # the event's own source wins
    connector = source.get("connector")
    ts_us = commit_time_us(source, payload)
    common = {"source": source_name, "op": op, "pos": position(source), "source_ts_us": ts_us,
              "tx_id": _tx_id(source), "tx_order": _tx_order(payload),
              "snapshot": snapshot_flag(source.get("snapshot")), "connector": connector}
    if table is None:
        return Change("invalid", f"no_primary_key_configured:{source_name}", **common)
    common["table"] = table.name
    if common["pos"] is None:
        return Change("invalid", "missing_source_position", **common)
    if ts_us is None:
        return Change("invalid", "missing_source_ts", **common)
    try:
        before, _ = _image(payload.get("before"), _fields(schema, "before"), table, connector)
        after, types = _image(payload.get("after"), _fields(schema, "after"), table, connector)
    except DecodeError as exc:
        return Change("invalid", f"undecodable_value: {str(exc)[:120]}", **common)
    if op == "t":
        return Change("change", **common)
    if op in ("c", "u", "r") and after is None:
        return Change("invalid", f"malformed_envelope: op={op} without `after`", **common)
    row_key = primary_key(table, after, before) if op != "d" else primary_key(table, before)
    row_key = row_key or parse_key(key, table)
    if row_key is None:
        return Change("invalid", f"missing_primary_key:{','.join(table.primary_key)}", **common)
    return Change("change", key=row_key, before=_dumps(before), after=_dumps(after),
                  column_types=_dumps(types) if types else None, **common)
