"""The Spark computation of one feature day from the registry: pure functions of their input frames.

Point in time: the features of day dt are "as of the end of dt", `feature_ts` = dt + 1 day 00:00 UTC,
and see only data strictly before it. A clickstream event at exactly feature_ts belongs to the next
day; a CDC version whose `valid_from` is exactly feature_ts is not visible yet (the version it
replaces still is). The training-set builder then serves a feature row to an entity timestamp t only
when feature_ts <= t, so nothing at or after t reaches a training row.
"""

from __future__ import annotations

import datetime as dt

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from jobs.common.spark import Persisted
from jobs.features.registry import ENTITIES, Entity, Feature, Scope, is_type

#: The events before a play that say where it came from: a click on a recommended item, or a search.
PLAY_SOURCES = {"click": "recommendation", "search": "search"}


def feature_ts(day: dt.date) -> dt.datetime:
    """The end of `day` (exclusive), UTC: what the day's features know about."""
    return dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), dt.UTC)


def window_events(bronze: DataFrame, day: dt.date) -> DataFrame:
    """The read window's events with `days_ago` and each play's source (attributed within its session)."""
    events = bronze.select("event_id", "event_type", "event_ts", "user_id", "session_id", "item_id", "revenue",
                           F.datediff(F.lit(day), F.col("dt")).alias("days_ago"))
    session = (Window.partitionBy("user_id", "session_id").orderBy("event_ts", "event_id")
               .rowsBetween(Window.unboundedPreceding, -1))
    previous = F.last(F.when(is_type(*PLAY_SOURCES), F.col("event_type")), ignorenulls=True).over(session)
    source = F.coalesce(F.create_map(*[F.lit(x) for kv in PLAY_SOURCES.items() for x in kv])[previous],
                        F.lit("direct"))
    return events.withColumn("play_source", F.when(is_type("play"), source))


def _aggregate(frame: DataFrame, key: str, features: tuple[Feature, ...], scope: Scope) -> DataFrame:
    return frame.groupBy(key).agg(*[f.expr(scope).alias(f.name) for f in features])


def _stage(features: tuple[Feature, ...], stage: str) -> tuple[Feature, ...]:
    return tuple(f for f in features if f.stage == stage)


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
    in_window = events.where(F.col("days_ago") < scope.settings.longest_window).where(F.col("user_id").isNotNull())
    activity = _aggregate(in_window, "user_id", _stage(mine, "events"), scope)
    sessions = in_window.groupBy("user_id", "session_id").agg(
        ((F.unix_micros(F.max("event_ts")) - F.unix_micros(F.min("event_ts"))) / 1e6).alias("session_seconds"),
        F.count(F.lit(1)).alias("session_events"))
    activity = activity.join(_aggregate(sessions, "user_id", _stage(mine, "sessions"), scope), "user_id", "left")
    subscribers = state.where(F.col("status") == "active").select("user_id")
    users = activity.select("user_id").unionByName(subscribers).distinct()
    frame = users.join(activity, "user_id", "left").join(state, "user_id", "left")
    frame = frame.withColumn("feature_ts", F.lit(feature_ts(scope.day)))
    frame = frame.withColumns({f.name: f.expr(scope) for f in _stage(mine, "state")})
    # no events in the window, or no history: counts and amounts are 0, not unknown
    frame = frame.fillna({f.name: 0 for f in mine if f.stage in ("events", "state") and f.kind in ("count", "amount")})
    return _finish(_with_derived(frame, mine, scope), entity, mine, scope.day)


def item_totals(activity: DataFrame, features: tuple[Feature, ...]) -> dict[str, float]:
    """The day's rates over all items (the priors of the smoothed features), in one aggregation."""
    pairs = {}
    for f in features:
        if f.name.startswith("item_sessions_clicked_") and f.window_days and f.window_days > 1:
            pairs[f"ctr_{f.window_days}d"] = (f.name, f"item_sessions_exposed_{f.window_days}d")
        if f.name.startswith("item_sessions_purchased_") and f.window_days and f.window_days > 1:
            pairs[f"conversion_{f.window_days}d"] = (f.name, f"item_sessions_touched_{f.window_days}d")
    if not pairs:
        return {}
    sums = activity.agg(*[F.sum(c).alias(c) for hits, trials in pairs.values() for c in (hits, trials)]).first()
    return {name: (sums[hits] or 0) / sums[trials] if sums[trials] else 0.0 for name, (hits, trials) in pairs.items()}


def item_day(events: DataFrame, features: tuple[Feature, ...], scope: Scope, persisted: Persisted) -> DataFrame:
    """One row per item with an event in the longest window (the aggregation is kept: the priors read it)."""
    entity = ENTITIES["item"]
    mine = entity.features(features)
    in_window = events.where(F.col("days_ago") < scope.settings.longest_window).where(F.col("item_id").isNotNull())
    activity = persisted.keep(_aggregate(in_window, "item_id", _stage(mine, "events"), scope))
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
    known = plan.select("user_id").unionByName(signup.select("user_id")).distinct()
    return (known.join(plan, "user_id", "left").join(signup, "user_id", "left").join(changes, "user_id", "left")
            .fillna({"plan_changes": 0}))


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
