"""Builds a lake for the feature tests: bronze clickstream partitions, the CDC history tables and the CDC
merge reports, written directly (they are the feature job's inputs, not what is under test here)."""

from __future__ import annotations

import datetime as dt
import json
import uuid

from pyspark.sql import SparkSession
from pyspark.sql.types import (
    DoubleType,
    LongType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

from jobs.common import storage
from jobs.common.paths import Lake

BRONZE = StructType([StructField("event_id", StringType()), StructField("event_type", StringType()),
                     StructField("event_ts", TimestampType()), StructField("user_id", StringType()),
                     StructField("session_id", StringType()), StructField("item_id", StringType()),
                     StructField("revenue", DoubleType())])
SUBSCRIPTIONS = StructType([StructField("subscription_id", LongType()), StructField("user_id", StringType()),
                            StructField("plan", StringType()), StructField("status", StringType()),
                            StructField("started_at", TimestampType()), StructField("valid_from", TimestampType()),
                            StructField("valid_to", TimestampType()), StructField("_pos_from", LongType())])
USERS = StructType([StructField("user_id", StringType()), StructField("signup_at", TimestampType()),
                    StructField("valid_from", TimestampType()), StructField("valid_to", TimestampType())])


def manifest(path: str) -> None:
    storage.write_atomic(Lake.manifest(path), json.dumps({"commit_id": uuid.uuid4().hex}).encode())


def write_bronze(spark: SparkSession, lake: Lake, day: dt.date, events: list[dict]) -> None:
    """The day's bronze partition (only the columns features read), replacing any earlier one."""
    path = lake.partition("bronze", "clickstream", day)
    mine = [{k: e[k] for k in BRONZE.fieldNames()} for e in events if e["event_ts"].date() == day]
    spark.createDataFrame(mine, BRONZE).coalesce(1).write.mode("overwrite").parquet(path)
    manifest(path)


def write_history(spark: SparkSession, lake: Lake, subscriptions: list[dict], users: list[dict],
                  merged_through: dt.date) -> None:
    for name, rows, schema in (("subscriptions", subscriptions, SUBSCRIPTIONS), ("users", users, USERS)):
        path = lake.silver(name, "history")
        spark.createDataFrame([{k: r[k] for k in schema.fieldNames()} for r in rows], schema) \
            .coalesce(1).write.mode("overwrite").parquet(path)
        manifest(path)
    storage.write_atomic(lake.report_file("cdc", merged_through), json.dumps({"status": "published"}).encode())


def event(n: int, kind: str, ts: dt.datetime, user: str = "u1", session: str | None = "s1", item: str | None = "i1",
          revenue: float | None = None) -> dict:
    return {"event_id": f"e{n:05d}", "event_type": kind, "event_ts": ts, "user_id": user, "session_id": session,
            "item_id": None if kind == "search" else item,
            "revenue": revenue if revenue is not None else (9.5 if kind == "purchase" else None)}
