"""The demo shop's OLTP side: users, subscriptions and the items catalog, as Debezium sees them.

Every demo clickstream user (`u0000000`...) and item (`i000000`...) exists in the initial state,
which is exported as a JSON dump with the LSN it was taken at (the onboarding snapshot). Each
generated day then brings PostgreSQL connector events (JSON converter, schemas.enable=false,
the connector's default encodings) on `cdc.public.<table>`: signups of new users (a user row and
often a subscription, one transaction), plan upgrades and downgrades, cancellations,
reactivations, account deletions (subscription and user deleted in one transaction, each delete
followed by its tombstone) and catalog price changes. A few records per day are bad the way
real feeds are: an unknown op, an image without its primary key, a cut-off JSON document, a table
nobody configured, a tombstone without its delete, and at-least-once re-deliveries.

Same seed, same bytes. `python -m demo --oltp-from D` runs it next to the clickstream.
"""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import json
import zlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from demo.kafka import assign_offsets
from demo.settings import ShopSettings
from jobs.cdc import settings as cdc_settings
from jobs.common import storage
from jobs.common.paths import Lake
from jobs.ingest import raw_zone

UNIX_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
FIRST_LSN = 0x1_6B37_48  # where the demo database's WAL starts
UNCONFIGURED_SOURCE = "public.audit_log"  # captured by Debezium, never configured in cdc.yaml


def _micros(moment: dt.datetime) -> int:
    return (moment - UNIX_EPOCH) // dt.timedelta(microseconds=1)


def wire(value: Any, column_type: str) -> Any:
    """A Python value in the PostgreSQL connector's default encoding for the column type."""
    if value is None:
        return None
    if column_type == "timestamp":
        return _micros(value)  # io.debezium.time.MicroTimestamp
    if column_type == "date":
        return (value - UNIX_EPOCH.date()).days  # io.debezium.time.Date
    if column_type.startswith("decimal"):  # Decimal, decimal.handling.mode=precise: unscaled big-endian bytes
        scale = int(column_type.rstrip(")").split(",")[1])
        unscaled = int(decimal.Decimal(value).scaleb(scale))
        return base64.b64encode(unscaled.to_bytes(unscaled.bit_length() // 8 + 1, "big", signed=True)).decode()
    return value


def dumped(value: Any) -> Any:
    """A Python value as a database export writes it (ISO times, decimal text)."""
    if isinstance(value, dt.datetime):
        return value.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    if isinstance(value, dt.date):
        return value.isoformat()
    return value


@dataclass
class Change:
    table: str  # a configured table name, or UNCONFIGURED_SOURCE
    op: str
    key: dict[str, Any]
    before: dict[str, Any] | None
    after: dict[str, Any] | None


@dataclass
class Shop:
    """The OLTP database's rows and its WAL position; every change advances the LSN."""

    cdc: cdc_settings.Settings
    settings: ShopSettings
    rng: np.random.Generator
    rows: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    lsn: int = FIRST_LSN
    tx_id: int = 700
    next_user: int = 0
    next_subscription: int = 1

    def row_key(self, table: str, row: dict[str, Any]) -> str:
        return json.dumps([row[c] for c in self.cdc.table(table).primary_key])

    def put(self, table: str, row: dict[str, Any]) -> Change:
        key = self.row_key(table, row)
        before = self.rows[table].get(key)
        self.rows[table][key] = row
        return Change(table, "u" if before else "c", {c: row[c] for c in self.cdc.table(table).primary_key},
                      None, row)  # REPLICA IDENTITY DEFAULT: updates carry no before image

    def delete(self, table: str, row: dict[str, Any]) -> Change:
        del self.rows[table][self.row_key(table, row)]
        pk = {c: row[c] for c in self.cdc.table(table).primary_key}
        return Change(table, "d", pk, {c: pk.get(c) for c in row}, None)  # before: the key columns only


def initial_shop(user_ids: list[str], item_prices: np.ndarray, genres: list[str], settings: ShopSettings,
                 seed: int, start: dt.date) -> Shop:
    """Every clickstream user and item, as the database holds them before the first generated day."""
    shop = Shop(cdc_settings.load(), settings, np.random.default_rng([seed, 7]),
                {"users": {}, "subscriptions": {}, "items": {}})
    day0 = dt.datetime.combine(start, dt.time(), dt.UTC)
    for user_id in user_ids:
        signup = day0 - dt.timedelta(seconds=int(shop.rng.integers(3600, 400 * 86400)))
        _signup(shop, user_id, signup, settings.initial_subscriber_share)
    shop.next_user = len(user_ids)
    for n, price in enumerate(item_prices):
        shop.put("items", {"item_id": f"i{n:06d}", "title": f"{genres[n % len(genres)].title()} #{n}",
                           "genre": genres[n % len(genres)], "price": f"{price:.2f}",
                           "updated_at": day0 - dt.timedelta(days=30)})
    return shop


def _signup(shop: Shop, user_id: str, at: dt.datetime, subscribe_share: float) -> list[Change]:
    s, rng = shop.settings, shop.rng
    changes = [shop.put("users", {
        "user_id": user_id, "email": f"{user_id}@example.com", "country": str(rng.choice(s.countries)),
        "signup_at": at, "birth_date": dt.date(1950, 1, 1) + dt.timedelta(days=int(rng.integers(0, 20000)))})]
    if rng.random() < subscribe_share:
        changes.append(_subscribe(shop, user_id, at))
    return changes


def _subscribe(shop: Shop, user_id: str, at: dt.datetime) -> Change:
    plan = str(shop.rng.choice(list(shop.settings.plans)))
    shop.next_subscription += 1
    return shop.put("subscriptions", {
        "subscription_id": shop.next_subscription - 1, "user_id": user_id, "plan": plan, "status": "active",
        "monthly_price": shop.settings.plans[plan], "started_at": at, "cancelled_at": None, "updated_at": at})


def _pick(shop: Shop, table: str, share: float, **where: Any) -> list[dict[str, Any]]:
    rows = [r for r in shop.rows[table].values() if all(r[k] == v for k, v in where.items())]
    count = int(shop.rng.binomial(len(rows), share)) if rows else 0
    return [rows[i] for i in sorted(shop.rng.choice(len(rows), count, replace=False))]


def day_transactions(shop: Shop, day: dt.date) -> list[tuple[dt.datetime, list[Change]]]:
    """One day of business, as (commit time, changes) transactions in commit order."""
    s, rng = shop.settings, shop.rng
    day0 = dt.datetime.combine(day, dt.time(), dt.UTC)
    planned: list[tuple[str, Any]] = [("signup", None)] * int(rng.poisson(s.signups_per_day))
    planned += [("plan_change", r) for r in _pick(shop, "subscriptions", s.plan_change_share, status="active")]
    planned += [("cancel", r) for r in _pick(shop, "subscriptions", s.cancel_share, status="active")]
    planned += [("reactivate", r) for r in _pick(shop, "subscriptions", s.reactivate_share, status="cancelled")]
    planned += [("delete", r) for r in _pick(shop, "users", s.delete_share)]
    planned += [("price", r) for r in _pick(shop, "items", s.price_change_share)]
    seconds = np.sort(rng.integers(0, 86400, len(planned)))
    transactions = []
    for (what, row), second in zip([planned[i] for i in rng.permutation(len(planned))], seconds, strict=True):
        at = day0 + dt.timedelta(seconds=int(second), microseconds=int(rng.integers(0, 10**6)))
        changes = _apply(shop, what, row, at)
        if changes:
            transactions.append((at, changes))
    return transactions


def _apply(shop: Shop, what: str, row: dict[str, Any] | None, at: dt.datetime) -> list[Change]:
    """One business event as the changes of its transaction (none if its row was deleted earlier today)."""
    s, rng = shop.settings, shop.rng
    if what == "signup":
        shop.next_user += 1
        return _signup(shop, f"u{shop.next_user - 1:07d}", at, s.signup_subscribe_share)
    table = {"delete": "users", "price": "items"}.get(what, "subscriptions")
    if shop.row_key(table, row) not in shop.rows[table]:
        return []
    if what == "delete":
        subscriptions = [r for r in shop.rows["subscriptions"].values() if r["user_id"] == row["user_id"]]
        return [shop.delete("subscriptions", r) for r in subscriptions] + [shop.delete("users", row)]
    if what == "price":
        factor = decimal.Decimal(str(rng.choice([0.8, 0.9, 1.1, 1.25])))
        price = (decimal.Decimal(row["price"]) * factor).quantize(decimal.Decimal("0.01"))
        return [shop.put("items", {**row, "price": str(price), "updated_at": at})]
    if what == "plan_change":
        plan = str(rng.choice([p for p in s.plans if p != row["plan"]]))
        return [shop.put("subscriptions", {**row, "plan": plan, "monthly_price": s.plans[plan], "updated_at": at})]
    if what == "cancel":
        return [shop.put("subscriptions", {**row, "status": "cancelled", "cancelled_at": at, "updated_at": at})]
    return [shop.put("subscriptions", {**row, "status": "active", "cancelled_at": None, "updated_at": at})]


def _source(shop: Shop, table: str) -> str:
    """`<schema>.<table>` of a configured table name, or the unconfigured source itself."""
    return table if table == UNCONFIGURED_SOURCE else shop.cdc.table(table).source


def _topic(shop: Shop, table: str) -> str:
    return f"{shop.cdc.topic_prefix}.{_source(shop, table)}"


def _envelope(shop: Shop, change: Change, at: dt.datetime, tx_id: int) -> dict[str, Any]:
    schema, name = _source(shop, change.table).split(".", 1)
    configured = change.table != UNCONFIGURED_SOURCE
    types = {c.name: c.type for c in shop.cdc.table(change.table).columns} if configured else {}
    previous, shop.lsn = shop.lsn, shop.lsn + int(shop.rng.integers(40, 4000))
    ts_ms = _micros(at) // 1000
    return {
        "before": change.before and {k: wire(v, types.get(k, "")) for k, v in change.before.items()},
        "after": change.after and {k: wire(v, types.get(k, "")) for k, v in change.after.items()},
        "source": {"version": "3.0.7.Final", "connector": "postgresql", "name": "cdc", "ts_ms": ts_ms,
                   "snapshot": "false", "db": "shop", "sequence": json.dumps([str(previous), str(shop.lsn)]),
                   "schema": schema, "table": name, "txId": tx_id, "lsn": shop.lsn, "xmin": None},
        "transaction": None, "op": change.op, "ts_ms": ts_ms + int(shop.rng.integers(5, 900)),
    }


@dataclass
class Outbox:
    """Kafka records per topic, in produce order: (partition, timestamp ms, key, value)."""

    partitions: int
    topics: dict[str, list[tuple[int, int, str | None, bytes | None]]] = field(default_factory=dict)

    def add(self, topic: str, key: dict[str, Any] | None, value: str | None, kafka_ms: int) -> None:
        key_text = key and json.dumps(key, separators=(",", ":"))  # Debezium's key: the primary key columns
        partition = zlib.crc32(key_text.encode()) % self.partitions if key_text else 0
        self.topics.setdefault(topic, []).append((partition, kafka_ms, key_text, value and value.encode()))


def day_records(shop: Shop, day: dt.date) -> list[raw_zone.RawRecord]:
    """The day's transactions as the Kafka records Debezium produces, bad ones included."""
    outbox = Outbox(shop.settings.partitions)
    for at, changes in day_transactions(shop, day):
        shop.tx_id += 1
        for change in changes:
            event = _envelope(shop, change, at, shop.tx_id)
            kafka_ms = event["ts_ms"] + int(shop.rng.integers(20, 2000))
            outbox.add(_topic(shop, change.table), change.key, json.dumps(event, separators=(",", ":")), kafka_ms)
            if change.op == "d":
                outbox.add(_topic(shop, change.table), change.key, None, kafka_ms + 1)  # the tombstone
    _redeliver(shop, outbox)
    _add_bad_records(shop, outbox, day)
    records = []
    for topic, entries in sorted(outbox.topics.items()):
        parts, stamps, keys, values = zip(*entries, strict=True)
        records += assign_offsets(topic, day, list(values), np.array(keys, dtype=object), np.array(parts),
                                  np.array(stamps, dtype=np.int64))
    return records


def _redeliver(shop: Shop, outbox: Outbox) -> None:
    """At-least-once delivery: a share of the records (at least one per topic) arrives twice."""
    share = shop.settings.redelivery_share
    for entries in outbox.topics.values():
        valued = [e for e in entries if e[3] is not None]
        picked = shop.rng.choice(len(valued), int(np.ceil(len(valued) * share)), replace=False) if valued else []
        entries += [(valued[i][0], valued[i][1] + 60_000, valued[i][2], valued[i][3]) for i in sorted(picked)]


def _add_bad_records(shop: Shop, outbox: Outbox, day: dt.date) -> None:
    """One of each kind of bad record."""
    noon = dt.datetime.combine(day, dt.time(12), dt.UTC)
    kafka_ms = _micros(noon) // 1000
    user = next(iter(shop.rows["users"].values()))
    users_topic = _topic(shop, "users")
    good = _envelope(shop, Change("users", "u", {"user_id": user["user_id"]}, None, user), noon, shop.tx_id)
    unknown_op = {**good, "op": "x"}
    no_key = {**good, "after": {k: v for k, v in good["after"].items() if k != "user_id"}}
    audit = _envelope(shop, Change(UNCONFIGURED_SOURCE, "c", {"id": 1}, None, {"id": 1, "action": "login"}),
                      noon, shop.tx_id)
    outbox.add(users_topic, None, json.dumps(no_key), kafka_ms)  # no key in the record nor in the image
    for value in (json.dumps(unknown_op), json.dumps(good)[:-40]):
        outbox.add(users_topic, {"user_id": user["user_id"]}, value, kafka_ms)
    outbox.add(_topic(shop, UNCONFIGURED_SOURCE), {"id": 1}, json.dumps(audit), kafka_ms)
    outbox.add(users_topic, {"user_id": user["user_id"]}, None, kafka_ms)  # a tombstone without its delete


def write_dump(shop: Shop, directory: str, taken_at: dt.datetime) -> dict[str, Any]:
    """The current rows of every table as JSON lines (`<table>.json`) and the LSN the export started at."""
    for table, rows in shop.rows.items():
        lines = [json.dumps({k: dumped(v) for k, v in row.items()}) for row in rows.values()]
        storage.write_atomic(f"{directory}/{table}.json", ("\n".join(lines) + "\n").encode())
    watermark = {"lsn": shop.lsn, "taken_at": dumped(taken_at),
                 "rows": {t: len(rows) for t, rows in shop.rows.items()}}
    storage.write_atomic(f"{directory}/_watermark.json", json.dumps(watermark, indent=2).encode())
    return watermark


def snapshot_params(lake: Lake, day: str) -> dict[str, Any]:
    """The cdc_ingestion DAG params that onboard the demo shop from the dump generated as of `day`."""
    export = lake.export_dir(f"oltp-{day}")
    watermark = json.loads(storage.read_bytes(f"{export}/_watermark.json"))
    return {"run_date": day, "snapshot_tables": sorted(watermark["rows"]), "snapshot_dump": f"{export}/{{table}}.json",
            "snapshot_watermark_lsn": str(watermark["lsn"]), "snapshot_taken_at": watermark["taken_at"]}


def snapshot_options(lake: Lake, day: str) -> dict[str, str]:
    """The same onboarding as `cdc_snapshot`'s command-line options (what the DAG renders from the params)."""
    params = snapshot_params(lake, day)
    return {"--tables": ",".join(params["snapshot_tables"]), "--dump": params["snapshot_dump"],
            "--watermark-lsn": params["snapshot_watermark_lsn"], "--taken-at": params["snapshot_taken_at"]}


def generate(lake: Lake, user_ids: list[str], item_prices: np.ndarray, genres: list[str],
             settings: ShopSettings, seed: int, start: dt.date, days: int) -> dict[str, Any]:
    """The initial dump (under raw/_exports/) and `days` days of CDC records into the raw zone."""
    shop = initial_shop(user_ids, item_prices, genres, settings, seed, start)
    export = lake.export_dir(f"oltp-{start.isoformat()}")
    watermark = write_dump(shop, export, dt.datetime.combine(start, dt.time(), dt.UTC))
    counts = {}
    for n in range(days):
        day = start + dt.timedelta(days=n)
        records = day_records(shop, day)
        raw_zone.write_grouped(lake, records)
        counts[day.isoformat()] = len(records)
    return {"export": export, "watermark": watermark, "records": counts}
