"""Features: the Spark computation against the slow reference (tests/features_reference.py) over random event
streams and plan histories, the job's inputs and gate, and its publish under reruns, patches and two runs at once."""

from __future__ import annotations

import datetime as dt
import json
import math
import threading

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from pyspark.sql import functions as F

from jobs import features_daily, training_set
from jobs.common import storage
from jobs.common.errors import MissingInput
from jobs.common.paths import Lake
from jobs.common.spark import Persisted
from jobs.features import compute, daily
from jobs.features.registry import ENTITIES, Scope, registry
from jobs.features.settings import load
from tests import features_reference as reference
from tests.conftest import in_jvm
from tests.feature_lake import BRONZE, SUBSCRIPTIONS, USERS, event, write_bronze, write_history

D = dt.date(2026, 11, 20)
SETTINGS = load()
FEATURES = registry(SETTINGS)
PLANS = ("basic", "standard", "premium")


def at(day: dt.date, seconds: int = 0) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(), dt.UTC) + dt.timedelta(seconds=seconds)


END = at(D + dt.timedelta(days=1))  # feature_ts of D: the boundary


def close(a: object, b: object) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        return a is not None and b is not None and math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
    return a == b


def assert_same(spark_rows: dict[str, dict], expected: dict[str, dict]) -> None:
    assert set(spark_rows) == set(expected)
    for key, row in expected.items():
        wrong = {n: (spark_rows[key][n], v) for n, v in row.items() if not close(spark_rows[key][n], v)}
        assert not wrong, f"{key}: (spark, reference) {wrong}"


def by_key(frame, key: str) -> dict[str, dict]:
    return {r[key]: r.asDict() for r in frame.collect()}


# --- random streams: events over 31 days around the window, sessions (some null), items; plan histories ---------------

times = st.one_of(st.integers(-31 * 86400, 86400 + 3600),  # anywhere, including after D and in the margin
                  st.sampled_from([0, -1, 86400 - 1, 86400, -28 * 86400, -27 * 86400]))  # on the boundaries
events_strategy = st.lists(st.tuples(
    st.sampled_from(reference.USER_TYPES), times, st.integers(0, 9), st.one_of(st.none(), st.integers(0, 3)),
    st.integers(0, 5),
    st.sampled_from([None, 3.5, 20.0])), min_size=0, max_size=150)
versions_strategy = st.lists(st.tuples(
    st.integers(0, 11), st.integers(0, 11),  # subscription id, user
    st.lists(st.tuples(st.sampled_from(PLANS), st.sampled_from(["active", "cancelled"]),
                       st.one_of(st.integers(-40 * 86400, 12 * 86400), st.sampled_from([86400, 86400 - 1, 86401]))),
             min_size=1, max_size=4)), max_size=12, unique_by=lambda s: s[0])


def build_events(drawn: list[tuple]) -> list[dict]:
    out = []
    for n, (kind, seconds, user, session, item, revenue) in enumerate(drawn):
        ts = at(D, seconds)
        out.append(event(n, kind, ts, user=f"u{user}", session=None if session is None else f"s{user}-{session}",
                         item=f"i{item}", revenue=revenue if kind == "purchase" else None))
    return out


def build_history(drawn: list[tuple]) -> tuple[list[dict], list[dict]]:
    subscriptions, users, pos = [], [], 0
    for sub_id, user, changes in drawn:
        stamps = sorted({at(D, s) for _, _, s in changes})
        started = stamps[0]
        for i, ((plan, status, _), start) in enumerate(zip(changes, stamps, strict=False)):
            pos += 1
            end = stamps[i + 1] if i + 1 < len(stamps) else None
            subscriptions.append({"subscription_id": sub_id, "user_id": f"u{user}", "plan": plan, "status": status,
                                  "started_at": started, "valid_from": start, "valid_to": end, "_pos_from": pos})
        users.append({"user_id": f"u{user}", "signup_at": started - dt.timedelta(days=sub_id * 3 + 1),
                      "valid_from": started, "valid_to": None})
    return subscriptions, users


def spark_features(spark, events: list[dict], subscriptions: list[dict], users: list[dict]):
    """What the job computes for D from these inputs (its read window of bronze, its history tables)."""
    first = D - dt.timedelta(days=SETTINGS.read_days - 1)
    rows = [{k: e[k] for k in BRONZE.fieldNames()} for e in events]
    bronze = (in_jvm(spark.createDataFrame(rows, BRONZE)).withColumn("dt", F.to_date("event_ts"))
              .where((F.col("dt") >= F.lit(first)) & (F.col("dt") <= F.lit(D))))
    window = compute.window_events(bronze, D)
    state = compute.user_state(in_jvm(spark.createDataFrame(subscriptions, SUBSCRIPTIONS)),
                               in_jvm(spark.createDataFrame(users, USERS)), D)
    scope = Scope(D, SETTINGS)
    return compute.user_day(window, state, FEATURES, scope), window


MARGIN_DAY_END = -(SETTINGS.longest_window - 1) * 86400  # the first window day's midnight, after the margin day
#: a session across the window's start: a play on the margin day (not counted) after a search, then a click on the
#: margin day explains a play after midnight (counted, from a recommendation)
ACROSS_THE_WINDOW_START = [("search", MARGIN_DAY_END - 60, 1, 0, 0, None), ("play", MARGIN_DAY_END - 30, 1, 0, 0, None),
                           ("click", MARGIN_DAY_END - 20, 1, 0, 0, None), ("play", MARGIN_DAY_END + 60, 1, 0, 0, None)]


@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(drawn_events=events_strategy, drawn_versions=versions_strategy)
@example(drawn_events=ACROSS_THE_WINDOW_START, drawn_versions=[])
def test_user_and_item_features_equal_the_reference(spark, drawn_events, drawn_versions):
    events = build_events(drawn_events)
    subscriptions, users = build_history(drawn_versions)
    users_frame, window = spark_features(spark, events, subscriptions, users)
    assert users_frame.columns == ["user_id", *[f.name for f in ENTITIES["user"].features(FEATURES)], "feature_ts"]
    assert_same(by_key(users_frame, "user_id"), reference.user_features(events, subscriptions, users, D, SETTINGS))
    kept = Persisted()
    try:
        items = compute.item_day(window, FEATURES, Scope(D, SETTINGS), kept)
        assert_same(by_key(items, "item_id"), reference.item_features(events, D, SETTINGS))
    finally:
        kept.release()
    horizon = SETTINGS.churn_horizon_days
    subs = in_jvm(spark.createDataFrame(subscriptions, SUBSCRIPTIONS))
    labels = {r["user_id"]: r["churned"] for r in compute.churn_labels(subs, D, horizon).collect()}
    assert labels == reference.churn_labels(subscriptions, D, horizon)


def test_the_boundary_a_change_or_event_at_feature_ts_is_not_visible_one_just_before_is(spark):
    events = [event(1, "search", END - dt.timedelta(microseconds=1000), user="u1"),
              event(2, "purchase", END, user="u1")]
    subscriptions = [
        {"subscription_id": 1, "user_id": "u1", "plan": "basic", "status": "active", "started_at": at(D, -86400),
         "valid_from": at(D, -86400), "valid_to": END, "_pos_from": 1},
        {"subscription_id": 1, "user_id": "u1", "plan": "premium", "status": "active", "started_at": at(D, -86400),
         "valid_from": END, "valid_to": None, "_pos_from": 2}]
    frame, _ = spark_features(spark, events, subscriptions, [])
    row = by_key(frame, "user_id")["u1"]
    assert (row["search_count_1d"], row["purchase_count_1d"]) == (1, 0)  # the purchase at feature_ts is D+1's
    assert (row["plan"], row["plan_changes_total"]) == ("basic", 0)      # the change at feature_ts is not seen yet


def test_users_with_events_but_no_history_and_events_before_signup_get_null_state(spark):
    events = [event(1, "page_view", at(D, 100), user="u1"), event(2, "page_view", at(D, 200), user="u2")]
    later = at(D, 2 * 86400)  # u2 signs up after D: the shop did not know them at feature_ts
    frame, _ = spark_features(spark, events, [], [{"user_id": "u2", "signup_at": later, "valid_from": later,
                                                   "valid_to": None}])
    rows = by_key(frame, "user_id")
    for user in ("u1", "u2"):
        assert (rows[user]["plan"], rows[user]["tenure_days"], rows[user]["plan_changes_total"]) == (None, None, 0)
        assert rows[user]["events_1d"] == 1


# --- the job: inputs, gate, publish ----------------------------------------------------------------------------

def demo_events(days: int, per_day: int = 60) -> list[dict]:
    out, n = [], 0
    for back in range(days):
        day = D - dt.timedelta(days=back)
        for i in range(per_day):
            user, kind = i % 7, reference.USER_TYPES[(i * 5 + back) % 6]
            out.append(event(n, kind, at(day, 3600 + i * 600), user=f"u{user}", session=f"s{back}-{user}-{i // 20}",
                             item=f"i{(i + back) % 5}"))
            n += 1
    return out


def history() -> tuple[list[dict], list[dict]]:
    subs = [{"subscription_id": u, "user_id": f"u{u}", "plan": PLANS[u % 3], "status": "active",
             "started_at": at(D, -40 * 86400), "valid_from": at(D, -40 * 86400), "valid_to": None, "_pos_from": u}
            for u in range(9)]
    users = [{"user_id": f"u{u}", "signup_at": at(D, -50 * 86400), "valid_from": at(D, -40 * 86400), "valid_to": None}
             for u in range(9)]
    return subs, users


def lake_with(spark, lake: Lake, days: int, merged_through: dt.date = D, skip: tuple[dt.date, ...] = ()) -> list[dict]:
    events = demo_events(days)
    for back in range(days):
        day = D - dt.timedelta(days=back)
        if day not in skip:
            write_bronze(spark, lake, day, events)
    write_history(spark, lake, *history(), merged_through)
    return events


def published(spark, lake: Lake, table: str, day: dt.date = D) -> list[tuple]:
    return sorted(tuple(r) for r in spark.read.parquet(lake.partition("gold", table, day)).collect())


def test_a_gap_in_the_window_or_a_missing_cdc_merge_is_an_error_naming_it(spark, lake):
    lake_with(spark, lake, 4, merged_through=D - dt.timedelta(days=1), skip=(D - dt.timedelta(days=2),))
    with pytest.raises(MissingInput, match="no partition for 2026-11-18 inside the 29-day window"):
        daily.run(spark, lake, D)
    write_bronze(spark, lake, D - dt.timedelta(days=2), demo_events(4))
    with pytest.raises(MissingInput, match="CDC history is merged through 2026-11-19, not 2026-11-20"):
        daily.run(spark, lake, D)
    with pytest.raises(MissingInput, match="bronze/clickstream/dt=2026-11-21 is not published"):
        daily.run(spark, lake, D + dt.timedelta(days=1))
    assert not storage.exists(lake.table("gold", "features"))


def test_publishes_features_and_labels_reruns_are_no_ops_and_a_day_without_events_still_has_subscribers(spark, lake):
    lake_with(spark, lake, 3)
    write_bronze(spark, lake, D, [])  # D itself has no events at all
    manifest = daily.run(spark, lake, D)
    assert manifest["status"] == "published", manifest.get("failures")
    users = {r["user_id"]: r for r in spark.read.parquet(lake.partition("gold", "features/user_day", D)).collect()}
    assert set(users) == {f"u{u}" for u in range(9)}  # u7, u8: subscribers without events
    assert users["u7"]["events_28d"] == 0 and users["u7"]["days_since_last_event"] is None
    assert users["u1"]["events_1d"] == 0 and users["u1"]["days_since_last_event"] == 1
    labels = lake.partition("gold", f"labels/churn_{SETTINGS.churn_horizon_days}d",
                            D - dt.timedelta(days=SETTINGS.churn_horizon_days))
    assert json.loads(storage.read_bytes(Lake.manifest(labels)))["rows"] == 9
    assert daily.run(spark, lake, D)["status"] == "up_to_date"  # same inputs, code and settings: not recomputed


@pytest.fixture
def job_main(spark, monkeypatch):
    """An entry point's `main`, run in the test session: the runner must not stop the shared session."""
    monkeypatch.setattr("jobs.common.runner.Context.stop", lambda self: None)

    def main(argv: list[str], module: str = "features_daily") -> int:
        return {"features_daily": features_daily.main, "training_set": training_set.main}[module](argv)
    return main


def test_the_gate_rejects_a_day_far_below_its_recent_row_counts_and_publishes_nothing(spark, lake, job_main, capsys):
    lake_with(spark, lake, 2)
    for back in (1, 2, 3):  # recent days had a thousand users each
        storage.write_atomic(Lake.manifest(lake.partition("gold", "features/user_day", D - dt.timedelta(days=back))),
                             json.dumps({"rows": 1000}).encode())
    code = job_main(["--date", str(D), "--lake-root", lake.root])
    assert code == 3
    err = capsys.readouterr().err
    assert "features dt=2026-11-20 not published" in err and "expect_table_row_count_to_be_between" in err
    assert not storage.exists(lake.partition("gold", "features/user_day", D))
    assert not storage.exists(lake.partition("gold", "features/item_day", D))
    assert storage.exists(lake.root + "/quarantine/_rejected_batches/gold/features/dt=2026-11-20")


def test_features_param_replaces_only_the_named_features(spark, lake):
    lake_with(spark, lake, 2)
    assert daily.run(spark, lake, D)["status"] == "published"
    before = {r["user_id"]: r.asDict() for r in spark.read.parquet(lake.partition("gold", "features/user_day", D))
              .collect()}
    subs, users = history()
    subs[1] = {**subs[1], "plan": "premium"}  # a corrected plan history for u1
    write_history(spark, lake, subs, users, D)
    manifest = daily.run(spark, lake, D, only=["plan"])
    assert manifest["status"] == "published" and manifest["features_recomputed"] == ["plan"]
    after = {r["user_id"]: r.asDict() for r in spark.read.parquet(lake.partition("gold", "features/user_day", D))
             .collect()}
    assert after["u1"]["plan"] == "premium"
    assert {u: {**r, "plan": None} for u, r in after.items()} == {u: {**r, "plan": None} for u, r in before.items()}


def test_two_runs_at_once_publish_one_whole_result_and_a_run_dying_before_publish_changes_nothing(
        spark, lake, monkeypatch):
    lake_with(spark, lake, 2)
    results: list = []
    threads = [threading.Thread(target=lambda: results.append(daily.run(spark, lake, D, full_refresh=True)))
               for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(r["status"] for r in results) == ["published", "published"]  # one after the other (group lock)
    before = published(spark, lake, "features/user_day")
    assert len(before) == 9
    write_bronze(spark, lake, D, demo_events(1, per_day=5))  # a changed input, then a crash while validating

    def crash(*args, **kwargs):
        raise OSError("killed while validating")
    monkeypatch.setattr("jobs.common.validation.validate", crash)
    with pytest.raises(OSError, match="killed"):
        daily.run(spark, lake, D)
    assert published(spark, lake, "features/user_day") == before
    assert not storage.exists(lake.table("gold", "features/user_day") + "/_staging")
    monkeypatch.undo()
    assert daily.run(spark, lake, D)["status"] == "published"  # the retry
    assert published(spark, lake, "features/user_day") != before


def test_late_events_recompute_the_closed_day_on_the_next_nights_run(spark, lake, job_main):
    events = lake_with(spark, lake, 3)
    yesterday = D - dt.timedelta(days=1)
    assert job_main(["--date", str(yesterday), "--lake-root", lake.root]) == 0
    late = event(99_999, "purchase", at(yesterday, 80_000), user="u3")  # reached bronze of D-1 a night late
    write_bronze(spark, lake, yesterday, [*events, late])
    assert job_main(["--date", str(D), "--lake-root", lake.root, "--revisit-late"]) == 0
    u3 = {r["user_id"]: r for r in spark.read.parquet(lake.partition("gold", "features/user_day", yesterday))
          .collect()}["u3"]
    assert u3["purchase_count_1d"] == sum(1 for e in [*events, late] if e["user_id"] == "u3"
                                          and e["event_type"] == "purchase" and e["event_ts"].date() == yesterday)


def test_a_backfill_gives_the_rows_each_day_gives_alone(spark, tmp_path, job_main):
    """Ten days backfilled in one run equal what each day computes alone from its own window (the first day,
    with a partial window; one in the middle; the last), row by row, users, items and labels."""
    lake = Lake((tmp_path / "lake").as_uri())
    first = D - dt.timedelta(days=9)
    lake_with(spark, lake, 10)
    assert job_main(["--date", str(first), "--end-date", str(D), "--lake-root", lake.root]) == 0
    subscriptions = spark.read.parquet(lake.silver("subscriptions", "history"))
    for day in (D, first, D - dt.timedelta(days=4)):
        alone = day_alone(spark, lake, day)
        for table in ("user_day", "item_day"):
            rows = sorted(tuple(r) for r in alone[table].collect())
            assert rows == published(spark, lake, f"features/{table}", day), (table, day)
        label_day = day - dt.timedelta(days=SETTINGS.churn_horizon_days)
        labels = compute.churn_labels(subscriptions, label_day, SETTINGS.churn_horizon_days)
        assert sorted(tuple(r) for r in labels.collect()) == published(
            spark, lake, f"labels/churn_{SETTINGS.churn_horizon_days}d", label_day)


def day_alone(spark, lake: Lake, day: dt.date) -> dict:
    """One day's user and item features computed from its own window only, as `features_daily` computes them."""
    first = max(day - dt.timedelta(days=SETTINGS.read_days - 1), D - dt.timedelta(days=9))
    present = [first + dt.timedelta(days=n) for n in range((day - first).days + 1)]
    bronze = spark.read.option("basePath", lake.table("bronze", "clickstream")).parquet(
        *[lake.partition("bronze", "clickstream", d) for d in present if storage.exists(
            lake.partition("bronze", "clickstream", d))])
    events = compute.window_events(bronze, day)
    state = compute.user_state(spark.read.parquet(lake.silver("subscriptions", "history")),
                               spark.read.parquet(lake.silver("users", "history")), day)
    kept = Persisted()
    items = compute.item_day(events, FEATURES, Scope(day, SETTINGS), kept).localCheckpoint()
    kept.release()
    return {"user_day": compute.user_day(events, state, FEATURES, Scope(day, SETTINGS)), "item_day": items}


def publish_features(spark, lake: Lake, day: dt.date) -> None:
    """The user-day partition as the job computes it, written straight to the lake (the builder's input)."""
    day_alone(spark, lake, day)["user_day"].write.mode("overwrite").parquet(
        lake.partition("gold", "features/user_day", day))


ENTITY_TIMES = [at(D, 36_000), at(D, 86_399), END, END + dt.timedelta(hours=5), at(D, -3600)]


def entities_file(spark, tmp_path, rows: list[tuple]) -> str:
    path = str(tmp_path / f"entities-{len(list(tmp_path.glob('entities-*')))}.parquet")
    spark.createDataFrame(rows, "user_id string, event_timestamp timestamp, label int").write.parquet(path)
    return path


def test_a_training_set_never_sees_data_from_or_after_each_entity_timestamp(spark, lake, tmp_path, job_main):
    events = lake_with(spark, lake, 3)
    days = (D - dt.timedelta(days=1), D)
    for day in days:
        publish_features(spark, lake, day)
    rows = [(f"u{n % 9}", t, n % 2) for n, t in enumerate(ENTITY_TIMES * 2)]
    entities = entities_file(spark, tmp_path, [*rows, rows[0]])  # a duplicate row: kept, one output row each
    names = "search_count_7d,events_1d,days_since_last_event,plan,plan_changes_total"
    argv = ["--lake-root", lake.root, "--entities", entities, "--features", names, "--max-age-days", "2"]
    assert job_main(argv + ["--out", str(tmp_path / "before")], module="training_set") == 0
    before = sorted(spark.read.parquet(str(tmp_path / "before")).collect(), key=str)
    assert sorted((r["user_id"], r["label"]) for r in before) == sorted((u, label) for u, _, label in [*rows, rows[0]])
    served = {r["user_feature_ts"] for r in before}
    assert served == {at(D).replace(tzinfo=None), END.replace(tzinfo=None), None}  # D-1's, D's, none at D-1 23:00

    # what happens at or after a user's last entity timestamp: events, and a plan change
    last = {u: max(t for v, t, _ in rows if v == u) for u, _, _ in rows}
    later = [event(50_000 + n, kind, t + dt.timedelta(seconds=s), user=u) for n, (u, t) in enumerate(last.items())
             for kind, s in (("search", 0), ("purchase", 1), ("page_view", 7200))]
    for day in days:
        write_bronze(spark, lake, day, [*events, *later])
    subs, users = history()
    changes = [{**subs[int(u[1:])], "plan": "premium", "valid_from": t, "valid_to": None, "_pos_from": 100 + n}
               for n, (u, t) in enumerate(last.items())]
    closed = [{**v, "valid_to": last[v["user_id"]]} if v["user_id"] in last else v for v in subs]
    write_history(spark, lake, closed + changes, users, D)
    for day in days:
        publish_features(spark, lake, day)
    assert job_main(argv + ["--out", str(tmp_path / "after")], module="training_set") == 0
    assert sorted(spark.read.parquet(str(tmp_path / "after")).collect(), key=str) == before


def test_bad_entity_files_and_requests_fail_with_one_clear_line(spark, lake, tmp_path, job_main, capsys):
    lake_with(spark, lake, 2)
    publish_features(spark, lake, D)
    good = entities_file(spark, tmp_path, [("u1", END, 1)])
    base = ["--lake-root", lake.root, "--features", "events_1d", "--out", str(tmp_path / "out")]
    cases = {
        "null or unparseable event_timestamp": [("u1", None, 1)],
        "after now": [("u1", dt.datetime(2999, 1, 1, tzinfo=dt.UTC), 1)],
    }
    for message, rows in cases.items():
        assert job_main([*base, "--entities", entities_file(spark, tmp_path, rows)], module="training_set") == 1
        assert message in capsys.readouterr().err
    assert job_main([*base, "--entities", good, "--features", "events_1d,evnts_7d"], module="training_set") == 1
    assert "unknown feature(s) evnts_7d; known:" in capsys.readouterr().err
    assert job_main([*base, "--entities", good], module="training_set") == 0
    assert job_main([*base, "--entities", good], module="training_set") == 1
    assert "exists: choose a new --out or pass --overwrite" in capsys.readouterr().err
    assert not list(tmp_path.glob("out.staging-*"))
