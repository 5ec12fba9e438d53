"""Deterministic demo clickstream with real signal, planted experiment effects and ~1% bad events.

Users have sessions (page_view first, then search/click/play/add_to_cart/purchase), Zipf
item popularity within latent genres and per-user genre tastes (so collaborative filtering
has something to find), a user agent, referrer, IP and consent flag. Experiment exposures
come from a hash allocator (experiment id + user id -> variant, stable across days) with the
effects planted in `include/demo_generator.yaml`: a real lift, an A/A test and a
sample-ratio mismatch. Bad events are the kinds real pipelines see: invalid JSON, missing
user_id, wrong types, timestamps far in the future and exact re-deliveries.

Same seed, same bytes. `demo/cli.py` writes the records into raw/ or produces them to Kafka.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pandas as pd

from demo.kafka import assign_offsets
from demo.settings import DemoSettings
from jobs.ingest import raw_zone

#: The most events generated and held at once (~3 GB of memory per million): a bigger day is made in parts.
PART_EVENTS = 1_000_000
HOUR_WEIGHTS = np.array([1, 1, 1, 1, 1, 2, 3, 4, 5, 5, 5, 6, 6, 5, 5, 5, 6, 7, 8, 9, 9, 8, 5, 3], float)


def allocate(experiment_id: str, user_id: str, weights: dict[str, float]) -> str:
    """Hash allocator: the same user always gets the same variant of an experiment."""
    digest = hashlib.sha256(f"{experiment_id}:{user_id}".encode()).digest()
    point = int.from_bytes(digest[:8], "big") / 2**64
    cumulative = 0.0
    for variant, weight in weights.items():
        cumulative += weight
        if point < cumulative:
            return variant
    return variant


def _uniform_hash(*parts: str) -> float:
    return int.from_bytes(hashlib.sha256(":".join(parts).encode()).digest()[:8], "big") / 2**64


@dataclass(frozen=True)
class Scale:
    events_per_day: int = 20_000
    users: int = 2_000
    items: int = 1_000
    days: int = 1


class Population:
    """Users and items, fixed by the seed so that every day sees the same people and catalog."""

    def __init__(self, scale: Scale, seed: int, settings: DemoSettings) -> None:
        self.settings = settings
        rng = np.random.default_rng([seed, 0])
        k = settings.taste_clusters
        self.user_ids = np.array([f"u{i:07d}" for i in range(scale.users)])
        activity = rng.lognormal(0.0, 1.0, scale.users)
        self.activity = activity / activity.sum()
        self.taste_cdf = np.cumsum(rng.dirichlet(np.full(k, settings.taste_alpha), scale.users), axis=1)
        self.consent = rng.random(scale.users) < settings.consent_rate
        self.user_agent = rng.integers(0, len(settings.user_agents), scale.users)
        self.ip = np.array([_ip(rng) for _ in range(scale.users)])
        self.partition = np.array([zlib.crc32(u.encode()) % settings.partitions for u in self.user_ids])
        self.items = scale.items
        self.item_price = np.round(rng.lognormal(2.5, 0.6, scale.items), 2)
        ranks = np.arange(int(np.ceil(scale.items / k)))
        zipf = 1.0 / (ranks + 1.0) ** settings.zipf_exponent
        self.rank_cdf = np.cumsum(zipf / zipf.sum())
        self.clusters = k

    @cached_property
    def exposures(self) -> np.ndarray:
        """Per user: the experiments and variants they are logged as exposed to."""
        out = np.empty(len(self.user_ids), dtype=object)
        for i, user in enumerate(self.user_ids):
            logged = []
            for exp in self.settings.experiments:
                variant = allocate(exp.id, user, exp.variants)
                loss = exp.exposure_loss.get(variant, 0.0)
                if _uniform_hash("exposure-loss", exp.id, user) >= loss:
                    logged.append({"experiment_id": exp.id, "variant": variant})
            out[i] = logged
        return out

    @cached_property
    def purchase_multiplier(self) -> np.ndarray:
        """Planted effects: the product of each allocated variant's relative purchase lift."""
        mult = np.ones(len(self.user_ids))
        for exp in self.settings.experiments:
            for i, user in enumerate(self.user_ids):
                mult[i] *= 1.0 + exp.purchase_lift.get(allocate(exp.id, user, exp.variants), 0.0)
        return mult


def _ip(rng: np.random.Generator) -> str:
    if rng.random() < 0.1:
        return ":".join(f"{x:x}" for x in rng.integers(0, 65536, 8))
    return ".".join(str(x) for x in rng.integers(1, 255, 4))


def day_frame(population: Population, day: dt.date, events: int, rng: np.random.Generator,
              part: int = 0) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """One day of valid events (or one part of a day: its sessions have their own ids) as a frame, with each
    event's time (epoch ms) and user index."""
    s = population.settings
    mean_len = s.mean_events_per_session
    lengths = rng.geometric(1.0 / mean_len, int(events / mean_len * 1.5) + 10)
    n_sessions = int(np.searchsorted(np.cumsum(lengths), events)) + 1
    lengths = lengths[:n_sessions]
    lengths[-1] -= lengths.sum() - events
    session = np.repeat(np.arange(n_sessions), lengths)
    first = np.r_[0, np.cumsum(lengths)[:-1]]
    position = np.arange(events) - first[session]

    user = rng.choice(len(population.user_ids), n_sessions, p=population.activity)[session]
    hour = rng.choice(24, n_sessions, p=HOUR_WEIGHTS / HOUR_WEIGHTS.sum())
    start_s = hour * 3600 + rng.uniform(0, 3600, n_sessions)
    gaps = rng.exponential(s.mean_seconds_between_events, events)
    gaps[position == 0] = 0.0
    elapsed = np.cumsum(gaps)
    elapsed -= elapsed[first][session]
    day_start_ms = int(dt.datetime.combine(day, dt.time(), dt.UTC).timestamp() * 1000)
    event_ms = day_start_ms + ((start_s[session] + elapsed) * 1000).astype(np.int64)

    types = list(s.event_type_weights)
    weights = np.array(list(s.event_type_weights.values()), float)
    weights /= weights.sum()
    type_idx = rng.choice(len(types), events, p=weights)
    p_purchase = weights[types.index("purchase")]
    upgrade = p_purchase * (population.purchase_multiplier[user] - 1.0) / (1.0 - p_purchase)
    type_idx[(rng.random(events) < upgrade)] = types.index("purchase")
    type_idx[position == 0] = types.index("page_view")
    event_type = np.array(types)[type_idx]

    explore = rng.random(events) < 0.15
    cluster = (rng.random(events)[:, None] > population.taste_cdf[user]).sum(axis=1)
    cluster[explore] = rng.integers(0, population.clusters, explore.sum())
    rank = np.searchsorted(population.rank_cdf, rng.random(events))
    item = (rank * population.clusters + cluster) % population.items
    is_search = event_type == "search"
    words = np.array(s.genre_words)
    ids = rng.integers(0, 2**63, (events, 2))
    session_part = f"{part}." if part else ""  # part 0 keeps the ids a one-part day always had

    frame = pd.DataFrame({
        "event_id": [f"{a:016x}{b:016x}" for a, b in ids],
        "event_type": event_type,
        "event_ts": np.char.add(np.datetime_as_string(event_ms.astype("datetime64[ms]"), unit="ms"), "Z"),
        "user_id": population.user_ids[user],
        "session_id": [f"s{day.toordinal()}-{session_part}{x}" for x in session],
        "item_id": np.where(is_search, None, np.char.add("i", np.char.zfill(item.astype(str), 6))),
        "query": np.where(is_search, np.char.add(np.char.add(words[cluster % len(words)], " "),
                                                 rng.integers(1, 50, events).astype(str)), None),
        "revenue": np.where(event_type == "purchase", population.item_price[item], np.nan),
        "currency": np.where(event_type == "purchase", "EUR", None),
        "user_agent": np.array(s.user_agents)[population.user_agent[user]],
        "referrer": np.where(position == 0,
                             np.array(s.referrers, dtype=object)[rng.integers(0, len(s.referrers), events)],
                             "https://shop.example/"),
        "ip": population.ip[user],
        "consent": population.consent[user],
        "experiments": np.where(position == 0, population.exposures[user], None),
    })
    return frame, event_ms, user


def generate_day(population: Population, day: dt.date, events: int, seed: int, topic: str, part: int = 0,
                 next_offsets: dict[int, int] | None = None) -> list[raw_zone.RawRecord]:
    """One day of events as Kafka records (partition, offset, timestamp), bad ones included; or part `part` of a
    day, its own random stream, offsets continuing from `next_offsets` (updated)."""
    s = population.settings
    rng = np.random.default_rng([seed, day.toordinal()] + ([part] if part else []))
    frame, event_ms, user = day_frame(population, day, events, rng, part)
    lines = frame.to_json(orient="records", lines=True).splitlines()
    delay_ms = (rng.lognormal(7.3, 1.0, events)).astype(np.int64)  # median ~1.5 s to reach Kafka
    late = rng.random(events) < 0.003
    delay_ms[late] += rng.integers(3_600_000, 20 * 3_600_000, late.sum())  # late arrivals, < 1 day
    kafka_ms = event_ms + delay_ms
    partitions = population.partition[user]
    keys = population.user_ids[user]
    extra = _corrupt(lines, rng, list(s.bad_event_kinds), kafka_ms)
    values = [line.encode() for line in lines] + [lines[i].encode() for i, _ in extra]
    kafka_ms = np.r_[kafka_ms, [ms for _, ms in extra]].astype(np.int64)
    partitions = np.r_[partitions, partitions[[i for i, _ in extra]]].astype(int)
    keys = np.r_[keys, keys[[i for i, _ in extra]]]
    return assign_offsets(topic, day, values, keys, partitions, kafka_ms, next_offsets)


def day_in_parts(population: Population, day: dt.date, events: int, seed: int,
                 topic: str) -> Iterator[list[raw_zone.RawRecord]]:
    """A day's records in parts of at most PART_EVENTS events, so that 10 million a day fit in memory; a day
    that fits in one part is exactly `generate_day`'s."""
    parts = -(-events // PART_EVENTS)
    next_offsets: dict[int, int] = {}
    for part in range(parts):
        yield generate_day(population, day, events // parts + (part < events % parts), seed, topic, part,
                           next_offsets)


def _corrupt(lines: list[str], rng: np.random.Generator, kinds: list[str],
             kafka_ms: np.ndarray) -> list[tuple[int, int]]:
    """Turn ~1% of lines bad in place; return the re-deliveries to append (index, kafka ms)."""
    picked = rng.choice(len(lines), max(len(kinds), len(lines) // 100), replace=False)
    redeliveries = []
    for n, i in enumerate(picked):
        kind = kinds[n % len(kinds)]
        if kind == "invalid_json":
            lines[i] = lines[i][: len(lines[i]) // 2]
            continue
        if kind == "duplicate":
            redeliveries.append((int(i), int(kafka_ms[i] + rng.integers(1_000, 600_000))))
            continue
        event = json.loads(lines[i])
        if kind == "missing_user_id":
            del event["user_id"]
        elif kind == "wrong_type":
            event["revenue"] = "12,50"
        elif kind == "future_timestamp":
            event["event_ts"] = str(int(event["event_ts"][:4]) + 5) + event["event_ts"][4:]
        lines[i] = json.dumps(event, separators=(",", ":"))
    return redeliveries


def genres(population: Population) -> list[str]:
    """The genre word of each latent taste cluster (item titles and the shop's catalog use it)."""
    words = population.settings.genre_words
    return [words[c % len(words)] for c in range(population.clusters)]
