"""Implicit feedback for ALS: weighted, time-decayed (user, item) confidences and stable integer ids.

Every function is DataFrame -> DataFrame with Spark SQL functions only. An interaction row is
`(user_id, item_id, weight, event_ts)`; it comes from the validated clickstream (weight from
the event type) or from an export file (weight given). Rows that cannot be used are split off
with a reason, never dropped silently.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass

from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from jobs.als.settings import AlsSettings
from jobs.common.paths import utc_midnight

INTERACTION_COLUMNS = ["user_id", "item_id", "weight", "event_ts"]
MAP_SCHEMA = "key string, id int, first_seen date"


def from_events(events: DataFrame, event_weights: dict[str, float]) -> DataFrame:
    """Clickstream events about an item whose type has a weight; searches (no item) are not interactions."""
    weight = F.create_map(*[F.lit(x) for pair in event_weights.items() for x in pair])[F.col("event_type")]
    return (events.where(F.col("item_id").isNotNull() & F.col("event_type").isin(list(event_weights)))
            .select("user_id", "item_id", weight.cast("double").alias("weight"), "event_ts"))


def read_export(spark: SparkSession, path: str) -> DataFrame:
    """An interaction export (Parquet, or CSV with a header): user_id, item_id, weight, event_ts."""
    reader = spark.read.option("header", True) if path.endswith(".csv") else spark.read
    frame = reader.csv(path) if path.endswith(".csv") else reader.parquet(path)
    missing = [c for c in INTERACTION_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"interaction export {path} lacks column(s) {missing}; needs {INTERACTION_COLUMNS}")
    return frame.select(F.col("user_id").cast("string"), F.col("item_id").cast("string"),
                        F.col("weight").cast("double"), F.col("event_ts").cast("timestamp"))


def _blank(column: str) -> Column:
    return F.col(column).isNull() | (F.trim(F.col(column)) == "")


def with_reason(rows: DataFrame) -> DataFrame:
    """Adds `reason`: null for a usable row, else why it cannot be an interaction."""
    weight = F.col("weight")
    reason = (F.when(_blank("user_id"), F.lit("missing_user_id"))
              .when(_blank("item_id"), F.lit("missing_item_id"))
              .when(F.col("event_ts").isNull(), F.lit("missing_event_ts"))
              .when(weight.isNull() | F.isnan(weight), F.lit("weight_not_a_number"))
              .when(weight < 0, F.lit("negative_weight"))
              .when(weight == float("inf"), F.lit("infinite_weight")))
    return rows.withColumn("reason", reason)


def decayed(rows: DataFrame, as_of: dt.datetime, half_life_days: float) -> DataFrame:
    """Weight x 2^(-age / half-life), age in days before `as_of` (events after it count fully)."""
    age_days = (F.lit(as_of).cast("double") - F.col("event_ts").cast("double")) / 86400.0
    factor = F.exp(F.greatest(age_days, F.lit(0.0)) * F.lit(-math.log(2.0) / half_life_days))
    return rows.withColumn("weight", F.col("weight") * factor)


def confidences(rows: DataFrame) -> DataFrame:
    """One row per (user, item): summed decayed weight, event count and last event time; zero weights out."""
    return (rows.groupBy("user", "item")
            .agg(F.sum("weight").alias("confidence"), F.count(F.lit(1)).alias("events"),
                 F.max("event_ts").alias("last_ts"))
            .where(F.col("confidence") > 0))


def assign_ids(keys: DataFrame, existing: DataFrame, max_id: int, day: dt.date) -> tuple[DataFrame, DataFrame]:
    """(the full id map, keys that did not fit) for distinct `keys` (column `key`).

    Existing keys keep their id; new keys get the next ids in key order, so ids are stable
    across runs and a rerun assigns nothing new. Keys past `max_id` (ALS ids are Java ints)
    get no id and come back as overflow.
    """
    start = existing.agg(F.coalesce(F.max("id") + 1, F.lit(0)).cast("long")).first()[0]
    new = (keys.select("key").distinct().join(existing.select("key"), "key", "left_anti")
           .withColumn("id", F.lit(start) + F.row_number().over(Window.orderBy("key")) - 1))
    fits = F.col("id") <= max_id
    added = new.where(fits).select("key", F.col("id").cast("int"), F.lit(day).alias("first_seen"))
    return existing.select("key", "id", "first_seen").unionByName(added), new.where(~fits).select("key")


def with_ids(rows: DataFrame, users: DataFrame, items: DataFrame) -> DataFrame:
    """Adds integer `user` and `item` from the maps (null where a key has no id)."""
    return (rows.join(users.select(F.col("key").alias("user_id"), F.col("id").alias("user")), "user_id", "left")
            .join(items.select(F.col("key").alias("item_id"), F.col("id").alias("item")), "item_id", "left"))


def popularity(train: DataFrame) -> DataFrame:
    """Items by the number of distinct users who interacted (ties by item id): the baseline and fallback."""
    return train.groupBy("item").agg(F.count_distinct("user").cast("float").alias("score"))


def holdout_labels(holdout: DataFrame, train: DataFrame) -> DataFrame:
    """Per user seen in training: the items they interacted with in the holdout and not before."""
    known = train.select("user").distinct()
    fresh = (holdout.select("user", "item").distinct()
             .join(train.select("user", "item"), ["user", "item"], "left_anti")
             .join(known, "user"))
    return fresh.groupBy("user").agg(F.array_sort(F.collect_list("item")).alias("relevant"))


def consumed(train: DataFrame) -> DataFrame:
    """Per user: the items to leave out of their recommendations."""
    return train.groupBy("user").agg(F.collect_set("item").alias("exclude"))


@dataclass(frozen=True)
class DataWindow:
    """The data one model sees: training days, then the holdout days, ending with the run date."""

    first: dt.date
    holdout_start: dt.date
    last: dt.date

    @classmethod
    def for_run(cls, day: dt.date, settings: AlsSettings) -> DataWindow:
        return cls(day - dt.timedelta(days=settings.window_days - 1),
                   day - dt.timedelta(days=settings.holdout_days - 1), day)

    @property
    def train_end(self) -> dt.date:
        return self.holdout_start - dt.timedelta(days=1)

    def cutoff(self) -> dt.datetime:
        return utc_midnight(self.holdout_start)

    def as_dict(self) -> dict[str, str]:
        return {"first": self.first.isoformat(), "train_end": self.train_end.isoformat(),
                "holdout_start": self.holdout_start.isoformat(), "last": self.last.isoformat()}


def in_window(rows: DataFrame, window: DataWindow) -> DataFrame:
    """Rows with an event time inside the window (or none, to be quarantined), tagged `holdout` after the cutoff."""
    end = utc_midnight(window.last + dt.timedelta(days=1))
    inside = (F.col("event_ts") >= F.lit(utc_midnight(window.first))) & (F.col("event_ts") < end)
    return (rows.where(inside | F.col("event_ts").isNull())
            .withColumn("holdout", F.col("event_ts") >= F.lit(window.cutoff())))


def labelled(frame: DataFrame, ids: dict[str, DataFrame]) -> DataFrame:
    """Each integer id column `c` becomes `c_idx`, with the external id beside it as `c_id`."""
    for column, id_map in ids.items():
        frame = frame.withColumnRenamed(column, f"{column}_idx").join(
            id_map.select(F.col("id").alias(f"{column}_idx"), F.col("key").alias(f"{column}_id")), f"{column}_idx")
    return frame
