"""Exposures and outcomes -> sums per experiment x variant x metric, in Spark (pure DataFrame functions).

From the validated clickstream, in one scan:

* per experiment and user: the first exposure inside the experiment's dates and the variant;
  users logged in more than one variant are excluded and counted;
* per user and metric: the value over events after the first exposure (up to the report date,
  or the experiment's end), and the CUPED covariate: the same metric over the
  `cuped_lookback_days` before the first exposure;
* sums per experiment x variant x metric (the counts interchange format, `counts.py`), also per
  day since exposure (novelty), plus collisions between experiments.
"""

from __future__ import annotations

import datetime as dt

import pandas as pd
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from jobs.ab import registry
from jobs.ab.counts import COLUMNS, DIAGNOSTIC_COLUMNS, UNREGISTERED
from jobs.ab.registry import Experiment, Metric, Registry
from jobs.common.paths import utc_midnight
from jobs.common.spark import Persisted

DAY_SECONDS = 86400
PRE = -1  # bucket of events before the first exposure (CUPED covariate)


def experiment_windows(spark: SparkSession, experiments: list[Experiment], day: dt.date) -> DataFrame:
    """Per experiment: exposures count from start 00:00 UTC until the day after its analysis end; its variants."""
    rows = [(e.id, utc_midnight(e.start_date), utc_midnight(e.analysis_end(day) + dt.timedelta(days=1)),
             list(e.variants))
            for e in experiments]
    return spark.createDataFrame(rows, "experiment_id string, window_start timestamp, window_end timestamp, "
                                       "variants array<string>")


def exposures(events: DataFrame, windows: DataFrame) -> DataFrame:
    """Every logged exposure inside its experiment's window. A variant the registry does not know becomes the
    one arm `(unregistered)`, its name kept aside: 20,000 junk names make one arm, not 20,000."""
    logged = (events.where(F.col("experiments").isNotNull())
              .select("user_id", "event_ts", F.explode("experiments").alias("x"))
              .select("user_id", "event_ts", F.col("x.experiment_id").alias("experiment_id"),
                      F.col("x.variant").alias("logged_variant"))
              .join(F.broadcast(windows), "experiment_id")
              .where((F.col("event_ts") >= F.col("window_start")) & (F.col("event_ts") < F.col("window_end"))))
    known = F.array_contains("variants", F.col("logged_variant"))
    return (logged.withColumn("variant", F.when(known, F.col("logged_variant")).otherwise(F.lit(UNREGISTERED)))
            .withColumn("unregistered_name", F.when(~known, F.col("logged_variant"))))


def assignments(exposed: DataFrame) -> DataFrame:
    """Per (experiment, user): first exposure time, the variant, and how many variants were logged."""
    return (exposed.groupBy("experiment_id", "user_id")
            .agg(F.min("event_ts").alias("first_exposure"), F.min_by("variant", "event_ts").alias("variant"),
                 F.count_distinct("variant").alias("variants_seen"), F.first("window_end").alias("window_end")))


def _measure_value(measure: registry.Measure) -> Column:
    value = F.lit(1.0) if measure.value is None else F.coalesce(F.col(measure.value).cast("double"), F.lit(0.0))
    return F.when(F.col("event_type") == measure.event_type, value).otherwise(F.lit(0.0))


def user_buckets(events: DataFrame, assigned: DataFrame, reg: Registry, lookback_days: int) -> DataFrame:
    """Measures per (experiment, variant, user, bucket): bucket k >= 0 = days since first exposure, -1 = before.

    Only single-variant users; events after the experiment's analysis end are not counted.
    """
    users = assigned.where(F.col("variants_seen") == 1).drop("variants_seen")
    age = (F.col("event_ts").cast("long") - F.col("first_exposure").cast("long")) / DAY_SECONDS
    joined = (events.select("user_id", "event_ts", "event_type", "revenue").join(users, "user_id")
              .where((F.col("event_ts") < F.col("window_end"))
                     & (F.col("event_ts") >= F.col("first_exposure") - F.expr(f"INTERVAL {lookback_days} DAYS")))
              .withColumn("bucket", F.when(age < 0, F.lit(PRE)).otherwise(F.floor(age).cast("int"))))
    measures = [F.sum(_measure_value(m)).alias(m.key) for m in reg.measures()]
    return (joined.groupBy("experiment_id", "variant", "user_id", "bucket")
            .agg(*measures, F.first(_complete_days()).alias("complete_days")))


def _complete_days() -> Column:
    """Whole days between a user's first exposure and the end of the analysed window."""
    return F.floor((F.col("window_end").cast("long") - F.col("first_exposure").cast("long")) / DAY_SECONDS).cast("int")


def _metric_value(metric: Metric, sums: dict[str, Column]) -> tuple[Column, Column]:
    """(per-user value, per-user denominator) of a metric from its measures' sums."""
    y = sums[metric.numerator.key]
    if metric.kind == "proportion":
        y = F.when(y > 0, F.lit(1.0)).otherwise(F.lit(0.0))
    den = sums[metric.denominator.key] if metric.denominator else F.lit(None).cast("double")
    return y, den


def _metric_rows(reg: Registry, sums: dict[str, Column], pre: dict[str, Column] | None) -> Column:
    """One struct per catalog metric, exploded so a single groupBy sums every metric."""
    structs = []
    for metric in reg.metrics.values():
        y, den = _metric_value(metric, sums)
        x = _metric_value(metric, pre)[0] if pre is not None and metric.kind != "ratio" else F.lit(None)
        structs.append(F.struct(F.lit(metric.name).alias("metric"), y.alias("y"), den.alias("d"),
                                x.cast("double").alias("x")))
    return F.explode(F.array(*structs)).alias("m")


def _sums(group: DataFrame, keys: list[str]) -> DataFrame:
    y, d, x = F.col("m.y"), F.col("m.d"), F.col("m.x")
    return group.groupBy(*keys, F.col("m.metric").alias("metric")).agg(
        F.count(F.lit(1)).cast("double").alias("count"), F.sum(y).alias("main_sum"),
        F.sum(y * y).alias("main_sum_squares"), F.sum(d).alias("denominator_sum"),
        F.sum(d * d).alias("denominator_sum_squares"), F.sum(y * d).alias("main_denominator_sum_product"),
        F.sum(x).alias("covariate_sum"), F.sum(x * x).alias("covariate_sum_squares"),
        F.sum(y * x).alias("main_covariate_sum_product"))


def total_counts(buckets: DataFrame, reg: Registry) -> DataFrame:
    """Cumulative sums per experiment x variant x metric, with the pre-exposure covariate."""
    keys = [m.key for m in reg.measures()]
    per_user = buckets.groupBy("experiment_id", "variant", "user_id").agg(
        *[F.sum(F.when(F.col("bucket") >= 0, F.col(k)).otherwise(0.0)).alias(k) for k in keys],
        *[F.sum(F.when(F.col("bucket") == PRE, F.col(k)).otherwise(0.0)).alias(f"pre__{k}") for k in keys])
    exploded = per_user.select("experiment_id", "variant", _metric_rows(
        reg, {k: F.col(k) for k in keys}, {k: F.col(f"pre__{k}") for k in keys}))
    return _sums(exploded, ["experiment_id", "variant"]).withColumn("day", F.lit(None).cast("int"))


def daily_counts(buckets: DataFrame, assigned: DataFrame, reg: Registry) -> DataFrame:
    """Sums per day since exposure k, over users whose day k is complete; idle users count as 0."""
    keys = [m.key for m in reg.measures()]
    active = buckets.where((F.col("bucket") >= 0) & (F.col("bucket") < F.col("complete_days")))
    sums = _sums(active.select("experiment_id", "variant", F.col("bucket").alias("day"),
                               _metric_rows(reg, {k: F.col(k) for k in keys}, None)),
                 ["experiment_id", "variant", "day"]).drop("count")
    by_age = (assigned.where(F.col("variants_seen") == 1)
              .groupBy("experiment_id", "variant", _complete_days().alias("complete_days"))
              .agg(F.count(F.lit(1)).cast("double").alias("users")).where(F.col("complete_days") >= 1))
    users = (by_age.select("experiment_id", "variant", "users",
                           F.explode(F.sequence(F.lit(0), F.col("complete_days") - 1)).alias("day"))
             .groupBy("experiment_id", "variant", "day").agg(F.sum("users").alias("count")))
    metrics = buckets.sparkSession.createDataFrame([(m,) for m in reg.metrics], "metric string")
    zero = ["main_sum", "main_sum_squares"]
    return (users.crossJoin(F.broadcast(metrics))
            .join(sums, ["experiment_id", "variant", "day", "metric"], "left")
            .fillna(0.0, subset=zero))


def diagnostics(assigned: DataFrame, exposed: DataFrame) -> DataFrame:
    """Users excluded for being in several variants, users shared between experiments, and how many distinct
    unregistered variant names were logged (kind `unregistered_variant_names`: `users` holds that number)."""
    names = (exposed.where(F.col("unregistered_name").isNotNull()).groupBy("experiment_id")
             .agg(F.count_distinct("unregistered_name").cast("double").alias("users"))
             .select("experiment_id", F.lit("unregistered_variant_names").alias("kind"),
                     F.lit(None).cast("string").alias("other"), "users"))
    multi = (assigned.where(F.col("variants_seen") > 1).groupBy("experiment_id")
             .agg(F.count(F.lit(1)).cast("double").alias("users"))
             .select("experiment_id", F.lit("multi_variant_users").alias("kind"), F.lit(None).cast("string")
                     .alias("other"), "users"))
    pairs = assigned.select("experiment_id", "user_id")
    collisions = (pairs.alias("a").join(pairs.alias("b"), "user_id")
                  .where(F.col("a.experiment_id") != F.col("b.experiment_id"))
                  .groupBy(F.col("a.experiment_id").alias("experiment_id"), F.col("b.experiment_id").alias("other"))
                  .agg(F.count(F.lit(1)).cast("double").alias("users"))
                  .select("experiment_id", F.lit("collision").alias("kind"), "other", "users"))
    return multi.unionByName(collisions).unionByName(names)


def aggregate(events: DataFrame, reg: Registry, experiments: list[Experiment], day: dt.date,
              running: list[Experiment] | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Counts (interchange format) and diagnostics for `experiments`, as small pandas frames.

    Collisions are counted against every experiment in `running` (default: the same list), so
    a run for a subset still sees overlaps with the others.
    """
    running = running or experiments
    windows = experiment_windows(events.sparkSession, running, day)
    selected = [e.id for e in experiments]
    cache = Persisted()
    try:
        events = cache.keep(events.select("user_id", "event_ts", "event_type", "revenue", "experiments"))
        # The one scan of the source, done before the joins: stages submitted together would
        # otherwise each compute the not-yet-cached partitions.
        events.count()
        exposed = exposures(events, windows)
        everyone = cache.keep(assignments(exposed))
        assigned = everyone.where(F.col("experiment_id").isin(selected))
        buckets = cache.keep(user_buckets(events, assigned, reg, reg.settings.cuped_lookback_days))
        counts = total_counts(buckets, reg).unionByName(daily_counts(buckets, assigned, reg), allowMissingColumns=True)
        counts_pd = counts.select(*COLUMNS).toPandas()
        diag_pd = (diagnostics(everyone, exposed).where(F.col("experiment_id").isin(selected))
                   .select(*DIAGNOSTIC_COLUMNS).toPandas())
    finally:
        cache.release()
    return counts_pd, diag_pd
