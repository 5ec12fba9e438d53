import collections
import datetime as dt
import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from demo import clickstream as gen
from demo import settings as demo_settings
from jobs.common import config
from jobs.common.errors import SettingsError

DAY = dt.date(2026, 11, 20)


@pytest.fixture(scope="module")
def settings():
    return demo_settings.load()


@pytest.fixture(scope="module")
def population(settings):
    return gen.Population(gen.Scale(events_per_day=20_000, users=3_000, items=600), 7, settings)


@pytest.fixture(scope="module")
def day_records(population):
    return gen.generate_day(population, DAY, 20_000, 7, "clickstream")


def _events(records):
    out = []
    for r in records:
        try:
            out.append(json.loads(r.value))
        except ValueError:
            out.append(None)
    return out


def test_same_seed_same_bytes(population, day_records):
    again = gen.generate_day(population, DAY, 20_000, 7, "clickstream")
    assert [(r.partition, r.offset, r.timestamp_ms, r.value) for r in again] == [
        (r.partition, r.offset, r.timestamp_ms, r.value) for r in day_records]


def test_allocator_is_stable_and_follows_the_split():
    weights = {"control": 0.5, "treatment": 0.5}
    users = [f"u{i}" for i in range(20_000)]
    first = [gen.allocate("exp", u, weights) for u in users]
    assert first == [gen.allocate("exp", u, weights) for u in users]
    share = first.count("treatment") / len(first)
    assert 0.48 < share < 0.52
    other = [gen.allocate("exp2", u, weights) for u in users]
    assert first != other  # independent across experiments


def test_about_one_percent_bad_events_of_each_kind(day_records):
    events = _events(day_records)
    invalid = sum(e is None for e in events)
    missing_user = sum(e is not None and "user_id" not in e for e in events)
    wrong_type = sum(e is not None and isinstance(e.get("revenue"), str) for e in events)
    future = sum(e is not None and e.get("event_ts", "")[:4] > "2030" for e in events)
    ids = collections.Counter(e["event_id"] for e in events if e)
    redelivered = sum(n - 1 for n in ids.values())
    for count in (invalid, missing_user, wrong_type, future, redelivered):
        assert 30 <= count <= 50  # 1% of 20,000 split over five kinds
    assert len(day_records) == 20_000 + redelivered


def test_offsets_are_contiguous_per_partition_and_ordered_by_kafka_time(day_records):
    by_partition = collections.defaultdict(list)
    for r in day_records:
        by_partition[r.partition].append(r)
    for records in by_partition.values():
        offsets = [r.offset for r in records]
        assert offsets == list(range(offsets[0], offsets[0] + len(offsets)))
        assert [r.timestamp_ms for r in records] == sorted(r.timestamp_ms for r in records)


def test_planted_srm_shows_in_logged_exposures(population):
    counts = collections.Counter()
    for exposures in population.exposures:
        for e in exposures:
            counts[(e["experiment_id"], e["variant"])] += 1
    srm = counts[("exp_ranking_srm", "treatment")] / counts[("exp_ranking_srm", "control")]
    aa = counts[("exp_homepage_aa", "treatment")] / counts[("exp_homepage_aa", "control")]
    assert srm < 0.95  # 15% of treatment exposures are never logged
    assert 0.9 < aa < 1.1


def test_planted_lift_raises_purchase_rate(population, day_records):
    treated = {u for u in population.user_ids
               if gen.allocate("exp_checkout_button", u, {"control": 0.5, "treatment": 0.5}) == "treatment"}
    purchases = collections.Counter()
    totals = collections.Counter()
    for e in _events(day_records):
        if e and "user_id" in e:
            arm = e["user_id"] in treated
            totals[arm] += 1
            purchases[arm] += e["event_type"] == "purchase"
    assert purchases[True] / totals[True] > purchases[False] / totals[False]


def test_users_concentrate_on_their_taste_clusters(population, day_records, settings):
    """Collaborative signal: a user's items come from few genres, far fewer than at random."""
    k = settings.taste_clusters
    genres = collections.defaultdict(collections.Counter)
    for e in _events(day_records):
        if e and e.get("item_id") and "user_id" in e:
            genres[e["user_id"]][int(e["item_id"][1:]) % k] += 1
    top_share = [max(c.values()) / sum(c.values()) for c in genres.values() if sum(c.values()) >= 10]
    assert np.mean(top_share) > 2.5 / k


def raw_settings() -> dict:
    return yaml.safe_load(config.settings_path("demo_generator.yaml").read_text())


def test_invalid_experiment_split_is_rejected():
    broken = raw_settings()
    broken["experiments"][0]["variants"] = {"control": 0.5, "treatment": 0.6}
    with pytest.raises(SettingsError, match="sum to 1.1"):
        demo_settings.parse(broken, Path("demo_generator.yaml"))


def test_every_settings_problem_is_listed_at_once(tmp_path, monkeypatch):
    broken = raw_settings()
    broken["taste_clusters"] = 0
    broken["bad_event_kinds"] = ["invalid_json", "teleport"]
    broken["experiments"][1]["purchase_lift"] = {"variant_c": 0.1}
    broken["oltp"]["cancel_share"] = "often"
    (tmp_path / "demo_generator.yaml").write_text(yaml.safe_dump(broken))
    monkeypatch.setenv("PIPELINE_CONFIG_DIR", str(tmp_path))  # a team's own settings, outside the checkout
    with pytest.raises(SettingsError) as caught:
        demo_settings.load.__wrapped__()
    message = str(caught.value)
    assert str(tmp_path / "demo_generator.yaml") in message
    for problem in ("settings.taste_clusters must be an integer >= 1, got 0", "bad_event_kinds must be among",
                    "experiments[1]: 'variant_c' is not one of its variants", "oltp.cancel_share must be a finite"):
        assert problem in message


def test_a_day_that_fits_in_one_part_is_generate_days(population, day_records):
    parts = list(gen.day_in_parts(population, DAY, 20_000, 7, "clickstream"))
    assert len(parts) == 1 and [r.value for r in parts[0]] == [r.value for r in day_records]


def test_a_big_day_in_parts_has_all_its_events_distinct_sessions_and_consecutive_offsets(population, monkeypatch):
    monkeypatch.setattr(gen, "PART_EVENTS", 8_000)
    parts = list(gen.day_in_parts(population, DAY, 20_000, 7, "clickstream"))
    assert len(parts) == 3
    valid = [[e for e in _events(part) if isinstance(e, dict) and isinstance(e.get("session_id"), str)]
             for part in parts]
    sessions = [{e["session_id"] for e in part} for part in valid]
    assert not sessions[0] & sessions[1] and not sessions[1] & sessions[2] and not sessions[0] & sessions[2]
    assert sum(len(part) for part in valid) >= 20_000 * 0.97  # ~1 % bad, re-deliveries counted twice
    offsets: dict[int, list[int]] = {}
    for record in [r for part in parts for r in part]:
        offsets.setdefault(record.partition, []).append(record.offset)
    for found in offsets.values():  # each partition's offsets continue across the parts: no gap, no repeat
        assert found == list(range(found[0], found[0] + len(found)))
