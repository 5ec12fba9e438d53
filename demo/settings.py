"""The demo generator's settings (`demo_generator.yaml`): behaviour, planted experiments, the shop database.

Validated on load like the pipeline's own settings: one `SettingsError` lists every problem.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jobs.common.settings import Checker, load_file

BAD_EVENT_KINDS = ("invalid_json", "missing_user_id", "wrong_type", "future_timestamp", "duplicate")
SPLIT_TOLERANCE = 1e-9


@dataclass(frozen=True)
class PlantedExperiment:
    """An experiment the demo users are allocated to, with its true effects."""

    id: str
    variants: dict[str, float]        # variant -> share of users (sums to 1)
    purchase_lift: dict[str, float]   # variant -> relative purchase-rate lift
    exposure_loss: dict[str, float]   # variant -> share of exposures never logged (a planted SRM)


@dataclass(frozen=True)
class ShopSettings:
    """The demo shop's OLTP database (demo/shop.py), as Debezium captures it."""

    partitions: int
    countries: tuple[str, ...]
    plans: dict[str, str]  # plan -> monthly price (decimal text)
    initial_subscriber_share: float
    signups_per_day: float
    signup_subscribe_share: float
    plan_change_share: float
    cancel_share: float
    reactivate_share: float
    delete_share: float
    price_change_share: float
    redelivery_share: float


@dataclass(frozen=True)
class DemoSettings:
    event_type_weights: dict[str, float]
    mean_events_per_session: float
    mean_seconds_between_events: float
    taste_clusters: int
    taste_alpha: float
    zipf_exponent: float
    consent_rate: float
    bad_event_kinds: tuple[str, ...]
    partitions: int
    experiments: tuple[PlantedExperiment, ...]
    genre_words: tuple[str, ...]
    user_agents: tuple[str, ...]
    referrers: tuple[str | None, ...]
    shop: ShopSettings


def _shares(check: Checker, raw: Any, where: str, upper: float = float("inf")) -> dict[str, float]:
    """A mapping of names to numbers in [0, upper]."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        check.check(False, f"{where} must map names to numbers, got {raw!r}")
        return {}
    values = {str(name): check.number(raw, name, where) for name in raw}
    for name, value in values.items():
        check.check(value <= upper, f"{where}.{name} must be at most {upper}, got {value}")
    return values


def _experiment(check: Checker, raw: Any, n: int) -> PlantedExperiment:
    where = f"experiments[{n}]"
    raw = raw if isinstance(raw, dict) else {}
    variants = _shares(check, raw.get("variants"), f"{where}.variants", upper=1.0)
    check.check(bool(variants) and abs(sum(variants.values()) - 1.0) <= SPLIT_TOLERANCE,
                f"{where}: variant weights sum to {sum(variants.values())}, not 1")
    lift = _shares(check, raw.get("purchase_lift"), f"{where}.purchase_lift")
    loss = _shares(check, raw.get("exposure_loss"), f"{where}.exposure_loss", upper=1.0)
    for name in {*lift, *loss} - set(variants):
        check.check(False, f"{where}: {name!r} is not one of its variants {sorted(variants)}")
    return PlantedExperiment(check.text(raw, "id", where), variants, lift, loss)


def parse(raw: Any, path: Path) -> DemoSettings:
    check = Checker("demo generator settings")
    raw = raw if isinstance(raw, dict) else {}
    weights = _shares(check, raw.get("event_type_weights"), "event_type_weights")
    check.check("purchase" in weights and "page_view" in weights and sum(weights.values()) > 0,
                "event_type_weights must weigh page_view and purchase (and sum to more than 0)")
    kinds = check.texts(raw, "bad_event_kinds", "settings")
    check.check(set(kinds) <= set(BAD_EVENT_KINDS), f"bad_event_kinds must be among {list(BAD_EVENT_KINDS)}")
    referrers = raw.get("referrers")
    check.check(isinstance(referrers, list) and bool(referrers)
                and all(r is None or isinstance(r, str) for r in referrers),
                "referrers must be a non-empty list of URLs (or null for none)")
    experiments = raw.get("experiments") if isinstance(raw.get("experiments"), list) else []
    check.check(bool(experiments), "experiments must be a non-empty list")
    oltp = check.section(raw, "oltp")
    plans = oltp.get("plans") if isinstance(oltp.get("plans"), dict) else {}
    check.check(bool(plans) and all(isinstance(p, str) for p in plans.values()),
                "oltp.plans must map plan names to monthly prices as decimal text")
    shop = ShopSettings(
        check.integer(oltp, "partitions", "oltp", minimum=1), check.texts(oltp, "countries", "oltp"), dict(plans),
        *(check.number(oltp, name, "oltp") for name in (
            "initial_subscriber_share", "signups_per_day", "signup_subscribe_share", "plan_change_share",
            "cancel_share", "reactivate_share", "delete_share", "price_change_share", "redelivery_share")))
    settings = DemoSettings(
        weights, check.number(raw, "mean_events_per_session", "settings", minimum=1.0),
        check.number(raw, "mean_seconds_between_events", "settings", exclusive=True),
        check.integer(raw, "taste_clusters", "settings", minimum=1),
        check.number(raw, "taste_alpha", "settings", exclusive=True),
        check.number(raw, "zipf_exponent", "settings", exclusive=True),
        check.number(raw, "consent_rate", "settings"), kinds, check.integer(raw, "partitions", "settings", minimum=1),
        tuple(_experiment(check, e, n) for n, e in enumerate(experiments)),
        check.texts(raw, "genre_words", "settings"), check.texts(raw, "user_agents", "settings"),
        tuple(referrers) if isinstance(referrers, list) else (), shop)
    check.check(settings.consent_rate <= 1, "settings.consent_rate must be at most 1")
    check.done(path)
    return settings


@functools.cache
def load(path: Path | None = None) -> DemoSettings:
    """`demo_generator.yaml`, validated."""
    return load_file("demo_generator.yaml", "demo generator settings", parse, path)
