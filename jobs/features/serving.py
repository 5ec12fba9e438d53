"""Historical retrieval: an entity frame joined with features as they were known at each row's timestamp.

For each entity row `(key, event_timestamp)` and each requested feature, the value comes from the
latest feature row of that key with `feature_ts <= event_timestamp` (feature_ts is the end of the
feature's day, so the row saw only data strictly before the entity's timestamp), and none older than
`max_age_days` (then null). Implemented as an as-of join: feature rows and entity rows of a key in
one time-ordered window, each entity row taking the last feature row before it; no fan-out.
Duplicate entity rows are kept, one output row each; any other columns (a label) pass through.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from jobs.common import storage
from jobs.common.errors import MissingInput, PipelineError
from jobs.common.paths import Lake
from jobs.common.spark import LakeFS
from jobs.features.daily import feature_table
from jobs.features.registry import ENTITIES, Feature, registry, select
from jobs.features.settings import load

TIMESTAMP = "event_timestamp"
ROW = "_entity_row"


class BadEntities(PipelineError, ValueError):
    """The entity frame cannot be served: a missing key or timestamp column, null or future timestamps."""


def check_entities(entities: DataFrame, keys: list[str], now: dt.datetime) -> None:
    missing = [c for c in [*keys, TIMESTAMP] if c not in entities.columns]
    if missing:
        raise BadEntities(f"the entity frame has no column {', '.join(missing)} (it has {', '.join(entities.columns)})")
    ts = F.col(TIMESTAMP).cast("timestamp")
    found = entities.agg(F.sum(F.when(ts.isNull(), 1).otherwise(0)).alias("nulls"),
                         F.sum(F.when(ts > F.lit(now), 1).otherwise(0)).alias("future"),
                         F.max(ts).alias("latest")).first()
    if found["nulls"]:
        raise BadEntities(f"{found['nulls']} entity rows have a null or unparseable {TIMESTAMP}: "
                          "a feature as of an unknown time cannot be served")
    if found["future"]:
        raise BadEntities(f"{found['future']} entity rows have a {TIMESTAMP} after now ({now:%Y-%m-%d %H:%M} UTC; "
                          f"latest {found['latest']}): no feature is known at a future time")


def as_of(entities: DataFrame, table: DataFrame, key: str, features: list[str], max_age_days: int,
          entity: str) -> DataFrame:
    """`entities` (with ROW) plus `features` from `table` as of each row's timestamp, and `<entity>_feature_ts`."""
    stamp = f"{entity}_feature_ts"
    left = entities.select(key, F.col(TIMESTAMP).cast("timestamp").alias("_t"), ROW, F.lit(1).alias("_side"),
                           F.lit(None).cast(table.select(F.struct(*features, "feature_ts")).schema[0].dataType)
                           .alias("_f"))
    right = table.select(key, F.col("feature_ts").alias("_t"), F.lit(None).cast("long").alias(ROW),
                         F.lit(0).alias("_side"), F.struct(*features, "feature_ts").alias("_f"))
    ordered = Window.partitionBy(key).orderBy("_t", "_side").rowsBetween(Window.unboundedPreceding, 0)
    joined = (left.unionByName(right).withColumn("_f", F.last("_f", ignorenulls=True).over(ordered))
              .where(F.col("_side") == 1))
    fresh = F.col("_f.feature_ts") >= F.col("_t") - F.expr(f"INTERVAL {int(max_age_days)} DAYS")
    return joined.select(ROW, *[F.when(fresh, F.col(f"_f.{name}")).alias(name) for name in features],
                         F.when(fresh, F.col("_f.feature_ts")).alias(stamp))


def historical_features(spark: SparkSession, lake: Lake, entities: DataFrame, features: tuple[Feature, ...],
                        max_age_days: int, now: dt.datetime | None = None) -> DataFrame:
    """The entity frame with each requested feature as of its row's timestamp: one output row per entity row."""
    groups = {name: [f.name for f in features if f.entity == name] for name in ENTITIES}
    groups = {name: names for name, names in groups.items() if names}
    now = now or dt.datetime.now(dt.UTC)
    check_entities(entities, [ENTITIES[name].key for name in groups], now)
    numbered = entities.withColumn(ROW, F.monotonically_increasing_id())
    result = numbered
    bounds = numbered.agg(F.min(F.col(TIMESTAMP).cast("timestamp")), F.max(F.col(TIMESTAMP).cast("timestamp"))).first()
    for name, names in groups.items():
        entity = ENTITIES[name]
        path = lake.table("gold", feature_table(entity))
        if not LakeFS(spark).exists(path):
            raise MissingInput(f"gold/{feature_table(entity)} does not exist: run features_daily first")
        table = spark.read.parquet(path)
        if bounds[0] is not None:  # partition pruning: only the days that can serve these timestamps
            first = bounds[0].date() - dt.timedelta(days=max_age_days + 1)
            table = table.where((F.col("dt") >= F.lit(first)) & (F.col("dt") <= F.lit(bounds[1].date())))
        result = result.join(as_of(numbered, table, entity.key, names, max_age_days, name), ROW, "left")
    return result.drop(ROW)


def storage_uri(path: str) -> str:
    """A path as the lake's storage and Spark both read it: a URI, or an absolute local path as file://."""
    return path if "://" in path else Path(path).resolve().as_uri()


def requested(names: str) -> tuple[Feature, ...]:
    """`--features a,b` as registry features; an unknown name fails (before Spark starts) listing the known ones."""
    return select(registry(load()), [n.strip() for n in names.split(",") if n.strip()])


def write_training_set(spark: SparkSession, lake: Lake, entities_path: str, features: tuple[Feature, ...],
                       out_path: str, max_age_days: int | None, overwrite: bool, run_id: str) -> dict[str, Any]:
    """The training-set CLI: checks, the as-of join, and a write beside `out` moved into place (never half
    written; an existing `out` is swapped atomically on a local filesystem, replaced in two steps elsewhere)."""
    settings = load()
    out, source = storage_uri(out_path), storage_uri(entities_path)
    if storage.exists(out) and not overwrite:
        raise PipelineError(f"{out_path} exists: choose a new --out or pass --overwrite")
    if not storage.exists(source):
        raise PipelineError(f"entity file {entities_path} not found")
    max_age = max_age_days if max_age_days is not None else settings.max_age_days
    frame = historical_features(spark, lake, spark.read.parquet(source), features, max_age)
    staged = f"{out.rstrip('/')}.staging-{run_id}"
    frame.write.parquet(staged)
    if not storage.exists(out):
        storage.move(staged, out)
    elif storage.exchange(staged, out):  # the old set is now at `staged`
        storage.delete(staged)
    else:
        storage.delete(out)
        storage.move(staged, out)
    written = spark.read.parquet(out)
    served = written.where(F.col(f"{features[0].entity}_feature_ts").isNotNull()).count()
    return {"status": "written", "out": out, "rows": written.count(), "rows_with_features": served,
            "features": [f.name for f in features], "max_age_days": max_age}
