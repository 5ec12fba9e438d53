"""The project's own Debezium events for tests, in the shapes real connectors write.

PostgreSQL events carry `source.lsn`/`txId` (position `[lsn]`), MySQL ones `file`/`pos`/`row`;
`schema=True` wraps the payload in the JSON converter's `schema`/`payload` envelope with the
logical types Debezium uses (MicroTimestamp, Date, Decimal as base64).
"""

from __future__ import annotations

import base64
import decimal
import json
from typing import Any

TABLE_SETTINGS = {
    "topic_prefix": "cdc",
    "tables": {
        "accounts": {
            "source": "public.accounts",
            "primary_key": ["id"],
            "columns": {"id": "bigint", "plan": "string", "price": "decimal(10,2)", "changed_at": "timestamp",
                        "birth_date": "date"},
        },
        "orders": {
            "source": "shop.orders",
            "primary_key": ["order_id"],
            "columns": {"order_id": "bigint", "status": "string", "placed_at": "timestamp"},
        },
    },
}
BASE_MS = 1_763_600_000_000  # 2025-11-20T00:53:20Z


def decimal_b64(value: str, scale: int = 2) -> str:
    unscaled = int(decimal.Decimal(value).scaleb(scale))
    return base64.b64encode(unscaled.to_bytes((unscaled.bit_length() + 8) // 8 or 1, "big", signed=True)).decode()


def account(id_: int, plan: str | None = "basic", price: str = "9.99", extra: dict | None = None) -> dict[str, Any]:
    """A row image as the PostgreSQL connector encodes it (micros, days, base64 decimal)."""
    return {"id": id_, "plan": plan, "price": decimal_b64(price), "changed_at": (BASE_MS + id_) * 1000,
            "birth_date": 10_000 + id_, **(extra or {})}


def _schema(row: dict[str, Any] | None) -> dict[str, Any]:
    logical = {"price": {"type": "bytes", "name": "org.apache.kafka.connect.data.Decimal",
                         "parameters": {"scale": "2"}},
               "changed_at": {"type": "int64", "name": "io.debezium.time.MicroTimestamp"},
               "birth_date": {"type": "int32", "name": "io.debezium.time.Date"}}
    fields = [{"field": name, "optional": True, **logical.get(name, {"type": "int64" if name == "id" else "string"})}
              for name in (row or {"id": 0})]
    value = {"type": "struct", "optional": True, "fields": fields}
    return {"type": "struct", "name": "pg.public.accounts.Envelope", "fields": [
        {**value, "field": "before"}, {**value, "field": "after"},
        {"type": "struct", "field": "source", "fields": []}, {"type": "string", "field": "op"}]}


def pg(op: str, lsn: int, after: dict | None = None, before: dict | None = None, *, schema: bool = False,
       table: str = "accounts", snapshot: Any = False, tx: int | None = None) -> str:
    """A PostgreSQL connector event (ts_us only in newer versions: included when schema=True)."""
    source = {"version": "2.7.0.Final", "connector": "postgresql", "name": "pg", "ts_ms": BASE_MS + lsn,
              "snapshot": snapshot, "db": "app", "schema": "public", "table": table,
              "txId": tx if tx is not None else lsn, "lsn": lsn, "xmin": None}
    if schema:
        source["ts_us"] = (BASE_MS + lsn) * 1000
    payload = {"before": before, "after": after, "source": source, "op": op, "ts_ms": BASE_MS + lsn + 5,
               "transaction": None}
    if op == "t":
        payload.pop("before"), payload.pop("after")
    return json.dumps({"schema": _schema(after or before), "payload": payload} if schema else payload)


def mysql(op: str, pos: int, after: dict | None = None, before: dict | None = None, row: int = 0,
          binlog: int = 3) -> str:
    """A MySQL connector event (binlog file/pos/row; `snapshot` as a string, as in 2.x+ output)."""
    ts_ms = BASE_MS + binlog * 100_000 + pos  # commit times follow the binlog
    source = {"version": "3.0.1.Final", "connector": "mysql", "name": "my", "ts_ms": ts_ms,
              "snapshot": "false", "db": "shop", "table": "orders", "server_id": 1, "gtid": None,
              "file": f"mysql-bin.{binlog:06d}", "pos": pos, "row": row, "thread": 7, "query": None}
    return json.dumps({"before": before, "after": after, "source": source, "op": op, "ts_ms": ts_ms + 3})


def pg_key(id_: int) -> str:
    return json.dumps({"schema": {"type": "struct", "fields": [{"field": "id", "type": "int64"}]},
                       "payload": {"id": id_}})
