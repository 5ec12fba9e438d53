"""The feature definitions of docs/FEATURES.md computed the slow, obvious way: plain Python loops over event and
version dicts, one user or item at a time. The Spark job must agree with it exactly."""

from __future__ import annotations

import datetime as dt
import math
from collections import defaultdict

from jobs.features.settings import FeatureSettings

EARLIEST = dt.datetime.min.replace(tzinfo=dt.UTC)
USER_TYPES = ("page_view", "search", "click", "play", "add_to_cart", "purchase")
ITEM_TYPES = ("page_view", "click", "play", "add_to_cart", "purchase")


def end_of(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), dt.UTC)


def valid_at(version: dict, t: dt.datetime) -> bool:
    return version["valid_from"] < t and (version["valid_to"] is None or version["valid_to"] >= t)


def play_source(event: dict, events: list[dict]) -> str:
    before = [e for e in events if e["user_id"] == event["user_id"] and e["session_id"] == event["session_id"]
              and (e["event_ts"], e["event_id"]) < (event["event_ts"], event["event_id"])
              and e["event_type"] in ("search", "click")]
    if not before:
        return "direct"
    latest = max(before, key=lambda e: (e["event_ts"], e["event_id"]))
    return "recommendation" if latest["event_type"] == "click" else "search"


def user_state(subscriptions: list[dict], users: list[dict], t: dt.datetime) -> dict[str, dict]:
    state: dict[str, dict] = {}
    by_user = defaultdict(list)
    for v in subscriptions:
        if valid_at(v, t):
            by_user[v["user_id"]].append(v)
    for user, versions in by_user.items():
        latest = versions[0]
        for v in versions[1:]:
            if (v["started_at"] is not None, v["started_at"] or EARLIEST, v["subscription_id"]) > \
                    (latest["started_at"] is not None, latest["started_at"] or EARLIEST,
                     latest["subscription_id"]):
                latest = v
        state[user] = {"plan": latest["plan"], "status": latest["status"]}
    changes: dict[str, list[dt.datetime]] = defaultdict(list)
    by_subscription = defaultdict(list)
    for v in subscriptions:
        if v["valid_from"] < t:
            by_subscription[v["subscription_id"]].append(v)
    for versions in by_subscription.values():
        versions.sort(key=lambda v: (v["valid_from"], v["_pos_from"]))
        for previous, v in zip(versions, versions[1:], strict=False):
            if previous["plan"] != v["plan"]:
                changes[v["user_id"]].append(v["valid_from"])
    for v in users:
        if valid_at(v, t):
            entry = state.setdefault(v["user_id"], {"plan": None, "status": None})
            entry["signup_at"] = max(entry.get("signup_at") or v["signup_at"], v["signup_at"])
    for user, entry in state.items():
        entry.setdefault("signup_at", None)
        entry["plan_changes"] = len(changes[user])
        entry["last_plan_change"] = max(changes[user]) if changes[user] else None
    return state


def user_features(events: list[dict], subscriptions: list[dict], users: list[dict], day: dt.date,
                  settings: FeatureSettings) -> dict[str, dict]:
    t = end_of(day)
    longest = settings.longest_window
    read = [e for e in events if 0 <= (day - e["event_ts"].date()).days < settings.read_days]
    state = user_state(subscriptions, users, t)
    mine: dict[str, list[dict]] = defaultdict(list)
    for e in read:
        if (day - e["event_ts"].date()).days < longest and e["user_id"] is not None:
            mine[e["user_id"]].append(e)
    population = set(mine) | {u for u, s in state.items() if s["status"] == "active"}
    out = {}
    for user in population:
        rows = mine.get(user, [])
        ago = [(day - e["event_ts"].date()).days for e in rows]
        f: dict = {}
        for w in settings.windows_days:
            inside = [e for e, a in zip(rows, ago, strict=True) if a < w]
            for kind in USER_TYPES:
                f[f"{kind}_count_{w}d"] = sum(1 for e in inside if e["event_type"] == kind)
            f[f"events_{w}d"] = len(inside)
            f[f"sessions_{w}d"] = len({e["session_id"] for e in inside if e["session_id"] is not None})
            f[f"active_days_{w}d"] = len({e["event_ts"].date() for e in inside})
            f[f"revenue_{w}d"] = sum(e["revenue"] for e in inside
                                     if e["event_type"] == "purchase" and e["revenue"] is not None) + 0.0
        f["days_since_last_event"] = min(ago) if ago else None
        f["days_since_last_search"] = min((a for e, a in zip(rows, ago, strict=True) if e["event_type"] == "search"),
                                          default=None)
        f["days_since_last_purchase"] = min(
            (a for e, a in zip(rows, ago, strict=True) if e["event_type"] == "purchase"), default=None)
        plays = [play_source(e, read) for e in rows if e["event_type"] == "play"]
        f[f"play_from_recommendation_share_{longest}d"] = plays.count("recommendation") / len(plays) if plays else None
        f[f"play_from_search_share_{longest}d"] = plays.count("search") / len(plays) if plays else None
        sessions = defaultdict(list)
        for e in rows:
            sessions[e["session_id"]].append(e["event_ts"])
        seconds = [(max(ts) - min(ts)).total_seconds() for ts in sessions.values()]
        f[f"session_seconds_mean_{longest}d"] = sum(seconds) / len(seconds) if seconds else None
        f[f"session_seconds_max_{longest}d"] = max(seconds) if seconds else None
        f[f"events_per_session_mean_{longest}d"] = (sum(len(ts) for ts in sessions.values()) / len(sessions)
                                                   if sessions else None)
        purchases = f[f"purchase_count_{longest}d"]
        f[f"avg_order_value_{longest}d"] = f[f"revenue_{longest}d"] / purchases if purchases else None
        f["day_of_week"] = day.isoweekday()
        s = state.get(user, {"plan": None, "status": None, "signup_at": None, "plan_changes": 0,
                             "last_plan_change": None})
        f["plan"], f["subscription_status"] = s["plan"], s["status"]
        f["tenure_days"] = max(0, math.floor((t - s["signup_at"]).total_seconds() / 86400)) \
            if s["signup_at"] is not None else None
        f["plan_changes_total"] = s["plan_changes"]
        f["days_since_last_plan_change"] = math.floor((t - s["last_plan_change"]).total_seconds() / 86400) \
            if s["last_plan_change"] is not None else None
        out[user] = f
    return out


def item_features(events: list[dict], day: dt.date, settings: FeatureSettings) -> dict[str, dict]:
    longest = settings.longest_window
    mine: dict[str, list[dict]] = defaultdict(list)
    for e in events:
        if 0 <= (day - e["event_ts"].date()).days < longest and e["item_id"] is not None:
            mine[e["item_id"]].append(e)
    out: dict[str, dict] = {}
    for item, rows in mine.items():
        ago = [(day - e["event_ts"].date()).days for e in rows]
        f: dict = {}
        for w in settings.windows_days:
            inside = [e for e, a in zip(rows, ago, strict=True) if a < w]
            for kind in ITEM_TYPES:
                f[f"item_{kind}_count_{w}d"] = sum(1 for e in inside if e["event_type"] == kind)

            def sessions(kinds: tuple[str, ...] | None, inside: list[dict] = inside) -> int:
                return len({e["session_id"] for e in inside if e["session_id"] is not None
                            and (kinds is None or e["event_type"] in kinds)})
            f[f"item_sessions_touched_{w}d"] = sessions(None)
            f[f"item_sessions_exposed_{w}d"] = sessions(("page_view", "click"))
            f[f"item_sessions_clicked_{w}d"] = sessions(("click",))
            f[f"item_sessions_purchased_{w}d"] = sessions(("purchase",))
        f["item_events_7d"] = sum(1 for a in ago if a < 7)
        f["item_events_prev_7d"] = sum(1 for a in ago if 7 <= a < 14)
        total = f["item_events_7d"] + f["item_events_prev_7d"]
        f["item_activity_trend_7d"] = (f["item_events_7d"] - f["item_events_prev_7d"]) / total if total else None
        out[item] = f
    strength = settings.smoothing_strength
    for w in settings.windows_days:
        if w == 1:
            continue
        for name, hits, trials in (("ctr", "clicked", "exposed"), ("conversion", "purchased", "touched")):
            k = sum(f[f"item_sessions_{hits}_{w}d"] for f in out.values())
            n = sum(f[f"item_sessions_{trials}_{w}d"] for f in out.values())
            prior = k / n if n else 0.0
            for f in out.values():
                f[f"item_{name}_smoothed_{w}d"] = ((f[f"item_sessions_{hits}_{w}d"] + strength * prior)
                                                   / (f[f"item_sessions_{trials}_{w}d"] + strength))
    return out


def churn_labels(subscriptions: list[dict], day: dt.date, horizon: int) -> dict[str, int]:
    t = end_of(day)
    end = t + dt.timedelta(days=horizon)
    active = {v["user_id"] for v in subscriptions if valid_at(v, t) and v["status"] == "active"}
    churned = set()
    by_subscription = defaultdict(list)
    for v in subscriptions:
        by_subscription[v["subscription_id"]].append(v)
    for versions in by_subscription.values():
        versions.sort(key=lambda v: (v["valid_from"], v["_pos_from"]))
        for previous, v in zip(versions, versions[1:], strict=False):
            if v["status"] == "cancelled" and previous["status"] != "cancelled" and t <= v["valid_from"] < end:
                churned.add(v["user_id"])
    return {u: int(u in churned) for u in active}
