"""Every feature, declared once: name, entity, source, aggregation, window, meaning, owner, type and the Spark
expression that computes it.

The Spark computation (`compute.py`), the GX gate (`gate.py`), the catalogue in docs/FEATURES.md
(`catalogue.py`) and the training-set builder's list of known names all read this registry; nothing
else lists features. A feature's expression is evaluated in the frame of its stage:

* `events`: aggregates over the entity's events of the longest window, one row per entity; columns
  `event_type`, `days_ago` (dt - event date, 0 for the day itself), `session_id`, `event_ts`,
  `revenue`;
* `sessions`: aggregates over the entity's sessions with an event in the window (one row per entity and
  `session_id`, a null `session_id` being one row too), columns `session_id`, `days_ago` (the session's
  latest event), `<event_type>_days_ago` (its latest event of that type, null: none), `session_seconds`,
  `session_events`;
* `plays` (users): aggregates over the user's plays in the window, column `play_source` (`recommendation`,
  `search` or `direct`: see `compute.plays`);
* `state` (users): the user's point-in-time state from the CDC history, columns `plan`, `status`,
  `signup_at`, `plan_changes`, `last_plan_change_ts`, `feature_ts`;
* `derived`: expressions over the other stages' features (and the day's totals, for priors).
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from pyspark.sql import Column
from pyspark.sql import functions as F

from jobs.common.errors import PipelineError
from jobs.features.settings import FeatureSettings

Stage = Literal["events", "sessions", "plays", "state", "derived"]
#: count, amount, days: >= 0; share: in [0, 1]; signed_share: in [-1, 1]; category: a label
Kind = Literal["count", "amount", "days", "share", "signed_share", "category"]
CLICKSTREAM = "bronze/clickstream"
SUBSCRIPTIONS = "silver/subscriptions_history"
USERS = "silver/users_history"


@dataclass(frozen=True)
class Scope:
    """What an expression may refer to besides its frame's columns: the day and the day's totals (priors)."""

    day: dt.date
    settings: FeatureSettings
    #: (hits, trials) -> sum(hits) / sum(trials) over all the day's entities
    totals: dict[tuple[str, str], float] = field(default_factory=dict)


@dataclass(frozen=True)
class Feature:
    name: str
    entity: Literal["user", "item"]
    stage: Stage
    source: str
    aggregation: str
    description: str
    dtype: str
    kind: Kind
    expr: Callable[[Scope], Column] = field(repr=False, compare=False)
    window_days: int | None = None
    #: features of one family differ only by window: the shorter window's value never exceeds the longer's
    family: str | None = None
    owner: str = ""
    #: a smoothed rate's (hits, trials) features: the day's rate over all entities is its prior
    prior: tuple[str, str] | None = None

    @property
    def zero_when_absent(self) -> bool:
        """An entity with no events (or no history) has 0 of an aggregated count or sum, not an unknown; a mean or
        maximum over sessions, a recency, a share and anything derived stay as computed (null)."""
        aggregated = self.stage in ("events", "state") or (self.stage == "sessions" and self.kind == "count")
        return aggregated and self.kind in ("count", "amount")


@dataclass(frozen=True)
class Entity:
    name: str
    key: str
    table: str  # gold/features/<table>/dt=D

    def features(self, registry: tuple[Feature, ...]) -> tuple[Feature, ...]:
        return tuple(f for f in registry if f.entity == self.name)


ENTITIES = {"user": Entity("user", "user_id", "user_day"), "item": Entity("item", "item_id", "item_day")}
USER_EVENT_TYPES = ("page_view", "search", "click", "play", "add_to_cart", "purchase")
ITEM_EVENT_TYPES = ("page_view", "click", "play", "add_to_cart", "purchase")
#: The session events an item is shown in (a click implies the item was seen).
EXPOSURES = ("page_view", "click")
#: The events before a play that say where it came from: a click on a recommended item, or a search.
PLAY_SOURCES = {"click": "recommendation", "search": "search"}


def within(days: int) -> Column:
    return F.col("days_ago") < F.lit(days)


def is_type(*types: str) -> Column:
    return F.col("event_type").isin(*types)


def count_where(condition: Column) -> Column:
    return F.sum(F.when(condition, 1).otherwise(0))


def sessions_with(days: int, *types: str) -> Column:
    """Sessions (of the `sessions` frame) with an event of these types (of any type, when none) in the last
    `days` days; a null session_id is not a session."""
    latest = [F.col(f"{t}_days_ago") for t in types] or [F.col("days_ago")]
    return count_where(F.col("session_id").isNotNull()
                       & ((F.least(*latest) if len(latest) > 1 else latest[0]) < F.lit(days)))


def distinct_days(days: int) -> Column:
    """Distinct event dates among the last `days`: the bits of a 64-bit mask with bit `days_ago` set per event.
    Not count_distinct, whose Expand repeats every row once per distinct aggregate, nor collect_set, which
    turns the whole aggregation into a slower object aggregation (hence windows of at most 64 days)."""
    day_bit = F.call_function("shiftleft", F.lit(1).cast("bigint"), F.col("days_ago"))
    return F.bit_count(F.bit_or(F.when(within(days), day_bit)))


def smoothed_rate(name: str, hits: str, trials: str, days: int, meaning: str) -> Feature:
    """(hits + s p) / (trials + s): a Beta(s p, s (1 - p)) prior with p the day's rate over all items (the
    feature's `prior`, summed by compute.item_totals), so an item seen once does not outrank one seen 1,000 times."""
    def expr(scope: Scope) -> Column:
        strength = scope.settings.smoothing_strength
        rate = scope.totals.get((hits, trials), 0.0)
        return (F.col(hits) + F.lit(strength * rate)) / (F.col(trials) + F.lit(strength))

    return Feature(name, "item", "derived", CLICKSTREAM,
                   f"({hits} + s p) / ({trials} + s), p = the day's sum of {hits} / sum of {trials} over all items, "
                   "s = smoothing_strength", meaning, "double", "share", expr, days, prior=(hits, trials))


def _windowed(settings: FeatureSettings) -> list[Feature]:
    found: list[Feature] = []
    for w in settings.windows_days:
        for t in USER_EVENT_TYPES:
            found.append(Feature(
                f"{t}_count_{w}d", "user", "events", CLICKSTREAM, f"count of `{t}` events",
                f"{t.replace('_', ' ')} events of the user in the last {w} day(s)", "bigint", "count",
                lambda s, t=t, w=w: count_where(is_type(t) & within(w)), w, f"user_{t}_count"))
        for t in ITEM_EVENT_TYPES:
            found.append(Feature(
                f"item_{t}_count_{w}d", "item", "events", CLICKSTREAM, f"count of `{t}` events",
                f"{t.replace('_', ' ')} events on the item in the last {w} day(s)", "bigint", "count",
                lambda s, t=t, w=w: count_where(is_type(t) & within(w)), w, f"item_{t}_count"))
        found += [
            Feature(f"events_{w}d", "user", "events", CLICKSTREAM, "count of events",
                    f"all events of the user in the last {w} day(s)", "bigint", "count",
                    lambda s, w=w: count_where(within(w)), w, "user_events"),
            Feature(f"sessions_{w}d", "user", "sessions", CLICKSTREAM, "distinct `session_id`",
                    f"sessions with at least one event in the last {w} day(s)", "bigint", "count",
                    lambda s, w=w: sessions_with(w), w, "user_sessions"),
            Feature(f"active_days_{w}d", "user", "events", CLICKSTREAM, "distinct event dates",
                    f"days with at least one event among the last {w}", "bigint", "count",
                    lambda s, w=w: distinct_days(w), w, "user_active_days"),
            Feature(f"revenue_{w}d", "user", "events", CLICKSTREAM, "sum of `revenue` of `purchase` events",
                    f"money spent in the last {w} day(s) (monetary, in the events' currency)", "double", "amount",
                    lambda s, w=w: F.coalesce(F.sum(F.when(is_type("purchase") & within(w), F.col("revenue"))),
                                              F.lit(0.0)), w, "user_revenue"),
            Feature(f"item_sessions_touched_{w}d", "item", "sessions", CLICKSTREAM, "distinct `session_id`",
                    f"sessions with any event on the item in the last {w} day(s)", "bigint", "count",
                    lambda s, w=w: sessions_with(w), w, "item_sessions_touched"),
            Feature(f"item_sessions_exposed_{w}d", "item", "sessions", CLICKSTREAM,
                    "distinct `session_id` of `page_view` or `click` events",
                    f"sessions that showed the item in the last {w} day(s)", "bigint", "count",
                    lambda s, w=w: sessions_with(w, *EXPOSURES), w, "item_sessions_exposed"),
            Feature(f"item_sessions_clicked_{w}d", "item", "sessions", CLICKSTREAM,
                    "distinct `session_id` of `click` events",
                    f"sessions that clicked the item in the last {w} day(s)", "bigint", "count",
                    lambda s, w=w: sessions_with(w, "click"), w, "item_sessions_clicked"),
            Feature(f"item_sessions_purchased_{w}d", "item", "sessions", CLICKSTREAM,
                    "distinct `session_id` of `purchase` events",
                    f"sessions that bought the item in the last {w} day(s)", "bigint", "count",
                    lambda s, w=w: sessions_with(w, "purchase"), w, "item_sessions_purchased"),
        ]
        if w > 1:
            found += [
                smoothed_rate(f"item_ctr_smoothed_{w}d", f"item_sessions_clicked_{w}d", f"item_sessions_exposed_{w}d",
                              w, f"click-through rate per session over {w} days, shrunk towards the average item"),
                smoothed_rate(f"item_conversion_smoothed_{w}d", f"item_sessions_purchased_{w}d",
                              f"item_sessions_touched_{w}d", w,
                              f"share of sessions touching the item that bought it, over {w} days, smoothed"),
            ]
    return found


def _user_single(settings: FeatureSettings) -> list[Feature]:
    w = settings.longest_window
    def play_share(source: str) -> Callable[[Scope], Column]:
        return lambda s: F.try_divide(count_where(F.col("play_source") == source), F.count(F.lit(1)))

    return [
        Feature("days_since_last_event", "user", "events", CLICKSTREAM, "dt - date of the latest event",
                f"recency: 0 = active on dt; null = no event in the last {w} days", "int", "days",
                lambda s: F.min("days_ago")),
        Feature("days_since_last_search", "user", "events", CLICKSTREAM, "dt - date of the latest `search`",
                f"people who stop searching churn; null = no search in the last {w} days", "int", "days",
                lambda s: F.min(F.when(is_type("search"), F.col("days_ago")))),
        Feature("days_since_last_purchase", "user", "events", CLICKSTREAM, "dt - date of the latest `purchase`",
                f"RFM recency; null = no purchase in the last {w} days", "int", "days",
                lambda s: F.min(F.when(is_type("purchase"), F.col("days_ago")))),
        Feature(f"play_from_recommendation_share_{w}d", "user", "plays", CLICKSTREAM,
                "plays whose latest earlier `search` or `click` in the session is a click / plays",
                "share of plays that followed a click on a recommended item; null = no plays", "double", "share",
                play_share("recommendation"), w),
        Feature(f"play_from_search_share_{w}d", "user", "plays", CLICKSTREAM,
                "plays whose latest earlier `search` or `click` in the session is a search / plays",
                "share of plays that followed a search; null = no plays", "double", "share", play_share("search"), w),
        Feature(f"session_seconds_mean_{w}d", "user", "sessions", CLICKSTREAM,
                "mean over sessions of (last - first event time) in seconds",
                "how long the user's sessions last; null = no sessions", "double", "amount",
                lambda s: F.avg("session_seconds"), w),
        Feature(f"session_seconds_max_{w}d", "user", "sessions", CLICKSTREAM, "max over sessions of the duration",
                "the user's longest session", "double", "amount", lambda s: F.max("session_seconds"), w),
        Feature(f"events_per_session_mean_{w}d", "user", "sessions", CLICKSTREAM, "mean events per session",
                "depth of the user's sessions", "double", "amount", lambda s: F.avg("session_events"), w),
        Feature(f"avg_order_value_{w}d", "user", "derived", CLICKSTREAM, f"revenue_{w}d / purchase_count_{w}d",
                "RFM monetary per order; null = no purchase", "double", "amount",
                lambda s: F.try_divide(F.col(f"revenue_{w}d"), F.col(f"purchase_count_{w}d")), w),
        Feature("day_of_week", "user", "derived", CLICKSTREAM, "ISO day of week of dt",
                "1 = Monday .. 7 = Sunday", "int", "count", lambda s: F.lit(s.day.isoweekday())),
        Feature("plan", "user", "state", SUBSCRIPTIONS, "`plan` of the user's latest-started subscription version "
                "valid at feature_ts", "the plan the user is on (null: never subscribed)", "string", "category",
                lambda s: F.col("plan")),
        Feature("subscription_status", "user", "state", SUBSCRIPTIONS, "`status` of that version",
                "active or cancelled (null: never subscribed)", "string", "category", lambda s: F.col("status")),
        Feature("tenure_days", "user", "state", USERS, "feature_ts - `signup_at` of the user's version valid at "
                "feature_ts, in whole days", "days since signup (null: the shop did not know the user yet)",
                "int", "days",
                lambda s: F.when(F.col("signup_at").isNotNull(), F.greatest(F.lit(0), F.floor(
                    (F.unix_timestamp("feature_ts") - F.unix_timestamp("signup_at")) / 86400).cast("int")))),
        Feature("plan_changes_total", "user", "state", SUBSCRIPTIONS,
                "versions valid before feature_ts whose `plan` differs from the same subscription's previous version",
                "how often the user switched plans", "bigint", "count", lambda s: F.col("plan_changes")),
        Feature("days_since_last_plan_change", "user", "state", SUBSCRIPTIONS,
                "feature_ts - valid_from of the latest plan change, in whole days",
                "null = never changed plan", "int", "days",
                lambda s: F.floor((F.unix_timestamp("feature_ts")
                                   - F.unix_timestamp("last_plan_change_ts")) / 86400).cast("int")),
    ]


def _item_single() -> list[Feature]:
    def previous_week(s: Scope) -> Column:
        return count_where((F.col("days_ago") >= 7) & (F.col("days_ago") < 14))

    return [
        Feature("item_events_prev_7d", "item", "events", CLICKSTREAM, "count of events 7 to 13 days before dt",
                "the item's activity in the week before the last", "bigint", "count", previous_week),
        Feature("item_events_7d", "item", "events", CLICKSTREAM, "count of events in the last 7 days",
                "the item's activity in the last week", "bigint", "count", lambda s: count_where(within(7)), 7),
        Feature("item_activity_trend_7d", "item", "derived", CLICKSTREAM,
                "(item_events_7d - item_events_prev_7d) / (item_events_7d + item_events_prev_7d)",
                "7-day trend: 1 = new this week, -1 = gone this week, 0 = flat", "double", "signed_share",
                lambda s: F.try_divide(F.col("item_events_7d") - F.col("item_events_prev_7d"),
                                       F.col("item_events_7d") + F.col("item_events_prev_7d")), 7),
    ]


@functools.cache
def registry(settings: FeatureSettings) -> tuple[Feature, ...]:
    """Every feature for these settings (windows come from features.yaml), each with its owner."""
    if settings.longest_window < 14:
        raise PipelineError("features.yaml: the longest window must be at least 14 days (item_activity_trend_7d)")
    found = [*_windowed(settings), *_user_single(settings), *_item_single()]
    names = [f.name for f in found]
    duplicated = {n for n in names if names.count(n) > 1}
    if duplicated:
        raise PipelineError(f"feature names declared twice: {sorted(duplicated)}")
    return tuple(Feature(**{**f.__dict__, "owner": f.owner or settings.owner}) for f in found)


class UnknownFeature(PipelineError, ValueError):
    """A requested feature that the registry does not declare; the message lists the known ones."""


def select(features: tuple[Feature, ...], names: list[str]) -> tuple[Feature, ...]:
    """The named features in the order given; an unknown name fails with the list of known names."""
    by_name = {f.name: f for f in features}
    unknown = [n for n in names if n not in by_name]
    if unknown:
        raise UnknownFeature(f"unknown feature(s) {', '.join(unknown)}; known: {', '.join(sorted(by_name))}")
    return tuple(by_name[n] for n in dict.fromkeys(names))
