"""The Spark computation of one feature day from the registry: pure functions of their input frames.

Point in time: the features of day dt are "as of the end of dt", `feature_ts` = dt + 1 day 00:00 UTC,
and see only data strictly before it. A clickstream event at exactly feature_ts belongs to the next
day; a CDC version whose `valid_from` is exactly feature_ts is not visible yet (the version it
replaces still is). The training-set builder then serves a feature row to an entity timestamp t only
when feature_ts <= t, so nothing at or after t reaches a training row.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from jobs.common.paths import utc_midnight
from jobs.common.spark import Persisted
from jobs.features.registry import ENTITIES, PLAY_SOURCES, USER_EVENT_TYPES, Entity, Feature, Scope, is_type


def feature_ts(day: dt.date) -> dt.datetime:
    """The end of `day` (exclusive), UTC: what the day's features know about."""
    return utc_midnight(day + dt.timedelta(days=1))


def window_events(bronze: DataFrame, day: dt.date) -> DataFrame:
    """The read window's events with `days_ago` (0 = `day` itself)."""
    return bronze.select("event_id", "event_type", "event_ts", "user_id", "session_id", "item_id", "revenue",
                         F.datediff(F.lit(day), F.col("dt")).alias("days_ago"))


def _in_window(events: DataFrame, key: str, scope: Scope) -> DataFrame:
    """The events of the longest window (not the margin day) that have the entity's key."""
    return events.where(F.col("days_ago") < scope.settings.longest_window).where(F.col(key).isNotNull())


def sessions(events: DataFrame, key: str, scope: Scope) -> DataFrame:
    """The `sessions` stage's frame: one row per (entity, session_id) with an event in the longest window
    (columns in registry.py)."""
    in_window = _in_window(events, key, scope)

    def latest(condition: Column) -> Column:
        return F.min(F.when(condition, F.col("days_ago")))

    return in_window.groupBy(key, "session_id").agg(
        F.min("days_ago").alias("days_ago"),
        *[latest(is_type(t)).alias(f"{t}_days_ago") for t in USER_EVENT_TYPES],
        ((F.unix_micros(F.max("event_ts")) - F.unix_micros(F.min("event_ts"))) / 1e6).alias("session_seconds"),
        F.count(F.lit(1)).alias("session_events"))


def plays(events: DataFrame, scope: Scope) -> DataFrame:
    """The `plays` stage's frame: the users' plays in the longest window, each with `play_source`: what its
    latest earlier search or click in the session (in (event_ts, event_id) order, over all the read events: a
    search on the margin day still explains a play after midnight) was, or `direct`. Sorts only the events
    that matter (plays, searches, clicks), and only those that can be counted or explain one."""
    session = (Window.partitionBy("user_id", "session_id").orderBy("event_ts", "event_id")
               .rowsBetween(Window.unboundedPreceding, -1))
    previous = F.last(F.when(is_type(*PLAY_SOURCES), F.col("event_type")), ignorenulls=True).over(session)
    source = F.coalesce(F.create_map(*[F.lit(x) for kv in PLAY_SOURCES.items() for x in kv])[previous],
                        F.lit("direct"))
    relevant = events.where(F.col("user_id").isNotNull() & is_type("play", *PLAY_SOURCES))
    return (relevant.select("user_id", "session_id", "event_ts", "event_id", "event_type", "days_ago")
            .withColumn("play_source", source)
            .where(is_type("play") & (F.col("days_ago") < scope.settings.longest_window)))


def _aggregate(frame: DataFrame, key: str, features: tuple[Feature, ...], scope: Scope) -> DataFrame:
    return frame.groupBy(key).agg(*[f.expr(scope).alias(f.name) for f in features])


def _stage(features: tuple[Feature, ...], stage: str) -> tuple[Feature, ...]:
    return tuple(f for f in features if f.stage == stage)


def _activity(events: DataFrame, entity: Entity, features: tuple[Feature, ...], scope: Scope) -> DataFrame:
    """The `events`, `sessions` and `plays` stages, one row per entity with an event in the longest window:
    an aggregation per stage (none with count_distinct, whose Expand repeats every row once per distinct
    aggregate), joined on the entity's key."""
    key = entity.key
    activity = _aggregate(_in_window(events, key, scope), key, _stage(features, "events"), scope)
    frames: dict[str, Callable[[], DataFrame]] = {"sessions": lambda: sessions(events, key, scope),
                                                  "plays": lambda: plays(events, scope)}
    for stage, frame in frames.items():
        if _stage(features, stage):
            activity = activity.join(_aggregate(frame(), key, _stage(features, stage), scope), key, "left")
    return activity


def _with_derived(frame: DataFrame, features: tuple[Feature, ...], scope: Scope) -> DataFrame:
    derived = _stage(features, "derived")
    return frame.withColumns({f.name: f.expr(scope).cast(f.dtype) for f in derived}) if derived else frame


def _finish(frame: DataFrame, entity: Entity, features: tuple[Feature, ...], day: dt.date) -> DataFrame:
    """The published columns, in registry order, each cast to its declared type, then feature_ts."""
    return frame.select(entity.key, *[F.col(f.name).cast(f.dtype).alias(f.name) for f in features],
                        F.lit(feature_ts(day)).alias("feature_ts"))


def user_day(events: DataFrame, state: DataFrame, features: tuple[Feature, ...], scope: Scope) -> DataFrame:
    """One row per user active in the longest window or holding an active subscription at feature_ts."""
    entity = ENTITIES["user"]
    mine = entity.features(features)
    activity = _activity(events, entity, mine, scope).withColumn("_active", F.lit(True))
    # one full join: each side is computed once (a union of keys then two joins would compute both twice)
    frame = (activity.join(state, "user_id", "full")
             .where(F.col("_active").isNotNull() | (F.col("status") == "active")).drop("_active"))
    frame = frame.withColumn("feature_ts", F.lit(feature_ts(scope.day)))
    frame = frame.withColumns({f.name: f.expr(scope) for f in _stage(mine, "state")})
    frame = frame.fillna({f.name: 0 for f in mine if f.zero_when_absent})
    return _finish(_with_derived(frame, mine, scope), entity, mine, scope.day)


def item_totals(activity: DataFrame, features: tuple[Feature, ...]) -> dict[tuple[str, str], float]:
    """The day's rates over all items (the priors of the smoothed features), in one aggregation."""
    pairs = {f.prior for f in features if f.prior}
    if not pairs:
        return {}
    sums = activity.agg(*[F.sum(c).alias(c) for c in sorted({c for pair in pairs for c in pair})]).first()
    return {(hits, trials): (sums[hits] or 0) / sums[trials] if sums[trials] else 0.0 for hits, trials in pairs}


def item_day(events: DataFrame, features: tuple[Feature, ...], scope: Scope, persisted: Persisted) -> DataFrame:
    """One row per item with an event in the longest window (the aggregation is kept: the priors read it)."""
    entity = ENTITIES["item"]
    mine = entity.features(features)
    activity = persisted.keep(_activity(events, entity, mine, scope))
    priced = Scope(scope.day, scope.settings, item_totals(activity, mine))
    return _finish(_with_derived(activity, mine, priced), entity, mine, scope.day)


def _visible(history: DataFrame, at: Column) -> DataFrame:
    """Versions known strictly before `at`."""
    return history.where(F.col("valid_from") < at)


def _valid_at(history: DataFrame, at: Column) -> DataFrame:
    """The versions in force at `at` (a change at exactly `at` is not visible yet)."""
    return _visible(history, at).where(F.col("valid_to").isNull() | (F.col("valid_to") >= at))


def user_state(subscriptions: DataFrame, users: DataFrame, day: dt.date) -> DataFrame:
    """Per user, from the CDC history as of feature_ts: the latest-started subscription's plan and status,
    signup time, plan changes so far and when the last one happened. Never reads `_current`."""
    at = F.lit(feature_ts(day))
    in_force = _valid_at(subscriptions, at)
    latest = Window.partitionBy("user_id").orderBy(F.col("started_at").desc_nulls_last(),
                                                   F.col("subscription_id").desc())
    plan = (in_force.withColumn("_n", F.row_number().over(latest)).where("_n = 1")
            .select("user_id", "plan", "status"))
    versions = Window.partitionBy("subscription_id").orderBy("valid_from", "_pos_from")
    changes = (_visible(subscriptions, at).withColumn("_previous", F.lag("plan").over(versions))
               .where(F.col("_previous").isNotNull() & (F.col("_previous") != F.col("plan")))
               .groupBy("user_id").agg(F.count(F.lit(1)).alias("plan_changes"),
                                       F.max("valid_from").alias("last_plan_change_ts")))
    signup = _valid_at(users, at).groupBy("user_id").agg(F.max("signup_at").alias("signup_at"))
    return plan.join(signup, "user_id", "full").join(changes, "user_id", "left").fillna({"plan_changes": 0})


def churn_labels(subscriptions: DataFrame, day: dt.date, horizon_days: int) -> DataFrame:
    """Users with an active subscription at the end of `day`, churned = 1 when one of their subscriptions is
    cancelled (its status turns `cancelled`) in [feature_ts, feature_ts + horizon): the label's window, which
    feature_ts itself belongs to, as it is not visible to the day's features."""
    start = feature_ts(day)
    end = start + dt.timedelta(days=horizon_days)
    active = (_valid_at(subscriptions, F.lit(start)).where(F.col("status") == "active")
              .select("user_id").distinct())
    previous = F.lag("status").over(Window.partitionBy("subscription_id").orderBy("valid_from", "_pos_from"))
    cancellations = subscriptions.withColumn("_previous", previous).where(
        (F.col("status") == "cancelled") & F.col("_previous").isNotNull() & (F.col("_previous") != "cancelled"))
    cancelled = (cancellations.where((F.col("valid_from") >= F.lit(start)) & (F.col("valid_from") < F.lit(end)))
                 .select("user_id").distinct().withColumn("churned", F.lit(1)))
    return (active.join(cancelled, "user_id", "left")
            .select("user_id", F.lit(start).alias("event_timestamp"),
                    F.coalesce(F.col("churned"), F.lit(0)).cast("int").alias("churned"),
                    F.lit(horizon_days).alias("horizon_days")))
