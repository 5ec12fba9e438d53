"""One feature day: how its time grows with events per day, window length and total history; DuckDB as the peer.

Writes `--days` days of generated bronze clickstream (users, sessions, items, six event types,
purchases with revenue) as `bronze/clickstream/dt=D` Parquet, a subscription and user history, and
times `jobs.features.compute` for the last day: the user-day and item-day features written as
Parquet (what `features_daily` does before its GX gate and publish; the gate is timed by the job's
own manifest). The peer, in the same run on the same Parquet files: DuckDB computing the same
user-day event features (counts per type and window, sessions, active days, revenue, recencies) and
the same item-day counts in SQL, written as Parquet; it leaves out what Spark also computes (play
attribution, session lengths, the CDC state, smoothed rates), so its time is a lower bound. Throughput
ratio = DuckDB time / Spark time (1 = as fast as DuckDB).

Cases: events/day x1 and x4 (cost must follow the window's events), the same day with a 14-day
window (cost must follow the window's length), and a lake with twice the history (cost must not
change: a day reads only its window). Then the training-set builder: `--entities` entity rows x
30 features.

    python benchmarks/features_vs_duckdb.py [--events-per-day 250000] [--entities 1000000]
        [--cases x1,x4,window,history]

At 10 M events a day, run `--events-per-day 10000000 --cases x1` (x4 would be 40 M a day).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shutil
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from pyspark.sql import SparkSession

from jobs.common.paths import Lake
from jobs.common.spark import Persisted
from jobs.features import compute
from jobs.features.registry import Scope, registry, select
from jobs.features.serving import historical_features
from jobs.features.settings import load

DAY = dt.date(2026, 11, 20)
TYPES = np.array(["page_view", "search", "click", "play", "add_to_cart", "purchase"])


def write_day(lake: Lake, day: dt.date, events: int, users: int, rng: np.random.Generator) -> None:
    session = rng.integers(0, events // 7 + 1, events)
    user = session % users
    start = dt.datetime.combine(day, dt.time(), dt.UTC).timestamp()
    ts = (start + rng.uniform(0, 86_399, events)) * 1e6
    kind = TYPES[rng.choice(6, events, p=[0.3, 0.1, 0.27, 0.15, 0.12, 0.06])]
    table = pa.table({
        "event_id": pa.array(np.char.add(f"{day:%Y%m%d}-", np.arange(events).astype(str))),
        "event_type": pa.array(kind), "event_ts": pa.array(ts.astype("int64"), pa.timestamp("us", tz="UTC")),
        "user_id": pa.array(np.char.add("u", user.astype(str))),
        "session_id": pa.array(np.char.add(f"s{day:%Y%m%d}-", session.astype(str))),
        "item_id": pa.array(np.where(kind == "search", None,
                                     np.char.add("i", (rng.zipf(1.3, events) % 20_000).astype(str))).tolist()),
        "revenue": pa.array(np.where(kind == "purchase", rng.uniform(1, 50, events), np.nan), from_pandas=True)})
    path = Path(lake.partition("bronze", "clickstream", day).removeprefix("file://"))
    path.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path / "part-0.parquet")


def write_lake(root: Path, days: int, events: int, users: int) -> Lake:
    lake = Lake(root.as_uri())
    rng = np.random.default_rng(days * 1_000_003 + events)
    for back in range(days):
        write_day(lake, DAY - dt.timedelta(days=back), events, users, rng)
    since = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    ids = np.arange(users)
    history = {"subscription_id": ids, "user_id": np.char.add("u", ids.astype(str)),
               "plan": np.array(["basic", "standard", "premium"])[ids % 3], "status": np.full(users, "active"),
               "started_at": np.full(users, since), "valid_from": np.full(users, since),
               "valid_to": pa.nulls(users, pa.timestamp("us", tz="UTC")), "_pos_from": ids}
    for name, columns in (("subscriptions", history), ("users", {
            "user_id": history["user_id"], "signup_at": np.full(users, since), "valid_from": np.full(users, since),
            "valid_to": pa.nulls(users, pa.timestamp("us", tz="UTC"))})):
        path = Path(lake.silver(name, "history").removeprefix("file://"))
        path.mkdir(parents=True)
        pq.write_table(pa.table(columns), path / "part-0.parquet")
    return lake


def spark_day(spark: SparkSession, lake: Lake, out: Path, window_days: int) -> float:
    settings = replace(load(), windows_days=(1, 7, window_days))
    features = registry(settings)
    started = time.perf_counter()
    bronze = spark.read.option("basePath", lake.table("bronze", "clickstream")).parquet(
        *[lake.partition("bronze", "clickstream", DAY - dt.timedelta(days=n)) for n in range(settings.read_days)])
    kept = Persisted()
    try:
        events = compute.window_events(bronze, DAY)
        state = compute.user_state(spark.read.parquet(lake.silver("subscriptions", "history")),
                                   spark.read.parquet(lake.silver("users", "history")), DAY)
        scope = Scope(DAY, settings)
        compute.user_day(events, state, features, scope).write.mode("overwrite").parquet(str(out / "users"))
        compute.item_day(events, features, scope, kept).write.mode("overwrite").parquet(str(out / "items"))
    finally:
        kept.release()
    return time.perf_counter() - started


def duckdb_day(lake: Lake, out: Path, window_days: int) -> float:
    """The same day's user-day event features and item-day counts in DuckDB SQL."""
    files = [f"{lake.partition('bronze', 'clickstream', DAY - dt.timedelta(days=n)).removeprefix('file://')}"
             f"/*.parquet" for n in range(window_days)]
    windows = (1, 7, window_days)
    user_cols = ", ".join(
        [f"count(*) FILTER (WHERE event_type = '{t}' AND ago < {w}) AS {t}_count_{w}d" for w in windows
         for t in TYPES] +
        [f"count(*) FILTER (WHERE ago < {w}) AS events_{w}d, count(DISTINCT session_id) FILTER (WHERE ago < {w}) "
         f"AS sessions_{w}d, count(DISTINCT ago) FILTER (WHERE ago < {w}) AS active_days_{w}d, "
         f"coalesce(sum(revenue) FILTER (WHERE event_type = 'purchase' AND ago < {w}), 0) AS revenue_{w}d"
         for w in windows] +
        ["min(ago) AS days_since_last_event", "min(ago) FILTER (WHERE event_type = 'search') AS days_since_last_search",
         "min(ago) FILTER (WHERE event_type = 'purchase') AS days_since_last_purchase"])
    item_cols = ", ".join(
        [f"count(*) FILTER (WHERE event_type = '{t}' AND ago < {w}) AS item_{t}_count_{w}d" for w in windows
         for t in TYPES if t != "search"] +
        [f"count(DISTINCT session_id) FILTER (WHERE ago < {w}) AS item_sessions_touched_{w}d" for w in windows])
    source = (f"(SELECT * FROM (SELECT *, date_diff('day', CAST(event_ts AS DATE), DATE '{DAY}') AS ago "
              f"FROM read_parquet({files!r})) WHERE ago < {window_days})")
    started = time.perf_counter()
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.execute(f"COPY (SELECT user_id, {user_cols} FROM {source} GROUP BY user_id) TO '{out}/users.parquet'")
    con.execute(f"COPY (SELECT item_id, {item_cols} FROM {source} WHERE item_id IS NOT NULL GROUP BY item_id) "
                f"TO '{out}/items.parquet'")
    return time.perf_counter() - started


def builder(spark: SparkSession, lake: Lake, out: Path, entities: int) -> float:
    """`entities` rows (users at random times on the day after DAY) x 30 features, from the day's partition."""
    features = registry(load())
    users = spark.read.parquet(str(out / "users"))
    users.write.mode("overwrite").parquet(lake.partition("gold", "features/user_day", DAY))
    names = [f.name for f in features if f.entity == "user"][:30]
    start = dt.datetime.combine(DAY + dt.timedelta(days=1), dt.time(), dt.UTC).timestamp()
    frame = spark.range(entities).selectExpr(
        f"concat('u', CAST(id % {users.count()} AS STRING)) AS user_id",
        f"timestamp_seconds({start} + id % 86400) AS event_timestamp")
    started = time.perf_counter()
    historical_features(spark, lake, frame, select(features, names), 2).write.mode("overwrite").parquet(
        str(out / "training"))
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events-per-day", type=int, default=250_000)
    parser.add_argument("--users", type=int, default=50_000)
    parser.add_argument("--entities", type=int, default=1_000_000)
    parser.add_argument("--cases", default="x1,x4,window,history",
                        help="which cases (the training set follows x1)")
    args = parser.parse_args()
    chosen = set(args.cases.split(","))
    spark = (SparkSession.builder.master("local[*]").config("spark.driver.memory", "6g")
             .config("spark.sql.session.timeZone", "UTC").config("spark.sql.shuffle.partitions", "16")
             .config("spark.ui.showConsoleProgress", "false").getOrCreate())
    spark.sparkContext.setLogLevel("ERROR")
    root = Path(tempfile.mkdtemp(prefix="features-bench-"))
    results = []
    try:
        cases = [(name, per_day, days, window) for key, name, per_day, days, window in (
            ("x1", "x1", args.events_per_day, 29, 28), ("x4", "x4", 4 * args.events_per_day, 29, 28),
            ("window", "x1, 14-day window", args.events_per_day, 29, 14),
            ("history", "x1, twice the history", args.events_per_day, 58, 28)) if key in chosen]
        lakes: dict[tuple[int, int], Lake] = {}
        for name, per_day, days, window in cases:
            if (per_day, days) not in lakes:
                lakes[(per_day, days)] = write_lake(root / f"lake-{per_day}-{days}", days, per_day, args.users)
            lake = lakes[(per_day, days)]
            out = root / f"out-{len(results)}"
            out.mkdir()
            spark_seconds = spark_day(spark, lake, out, window)
            duck_seconds = duckdb_day(lake, out, window)
            results.append({"case": name, "events_per_day": per_day, "window_days": window, "lake_days": days,
                            "window_events": per_day * min(window + 1, days), "spark_s": round(spark_seconds, 1),
                            "duckdb_s": round(duck_seconds, 1),
                            "throughput_vs_duckdb": round(duck_seconds / spark_seconds, 3)})
            print(json.dumps(results[-1]), flush=True)
        if "x1" in chosen:
            seconds = builder(spark, lakes[(args.events_per_day, 29)], root / "out-0", args.entities)
            results.append({"case": f"training set: {args.entities:,} entity rows x 30 features",
                            "spark_s": round(seconds, 1)})
            print(json.dumps(results[-1]), flush=True)
    finally:
        spark.stop()
        shutil.rmtree(root, ignore_errors=True)
    print("\n| case | events/day | window | lake days | Spark s | DuckDB s | Spark throughput / DuckDB |")
    print("|---|---|---|---|---|---|---|")
    for r in results:
        if "duckdb_s" in r:
            print(f"| {r['case']} | {r['events_per_day']:,} | {r['window_days']} d | {r['lake_days']} | {r['spark_s']} "
                  f"| {r['duckdb_s']} | {r['throughput_vs_duckdb']:.2f} |")
        else:
            print(f"| {r['case']} | | | | {r['spark_s']} | | |")


if __name__ == "__main__":
    main()
