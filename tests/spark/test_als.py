"""ALS training end to end on small clustered clickstreams: interactions, ids, evaluation, registry, bad input."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import zlib
from pathlib import Path

import numpy as np
import pytest
import yaml
from pyspark.ml.recommendation import ALSModel
from pyspark.sql import functions as F

from jobs import als_train as als_job
from jobs.als import interactions as ix
from jobs.als import registry
from jobs.als import train as als_train
from jobs.als.evaluation import ranking_metrics, with_fallback
from jobs.als.model import non_finite_factors, train
from jobs.als.settings import default_path as settings_path
from jobs.als.settings import parse
from jobs.common import storage
from jobs.common.paths import Lake

DAY = dt.date(2026, 11, 20)
WINDOW = 6  # days up to DAY; the last one is the holdout


def small_settings(**changes):
    raw = yaml.safe_load(Path(settings_path()).read_text())
    raw["interactions"].update(window_days=WINDOW, holdout_days=1, min_interactions=50, min_users=5, min_items=5)
    raw["training"].update(params={"rank": 8, "reg_param": 0.05, "alpha": 10.0, "max_iter": 8}, num_blocks=2,
                           checkpoint_interval=3)
    raw["evaluation"]["k"] = 5
    raw["outputs"].update(top_k=5, similar_k=3, popular_k=10, item_block_size=7)
    for dotted, value in changes.items():
        section, key = dotted.split("__")
        raw[section][key] = value
    return parse(raw)


def clustered_events(last_day: dt.date, days: int, users: int = 80, items: int = 40, per_day: int = 3,
                     seed: int = 0, holdout: bool = True) -> list[tuple]:
    """Users in two taste clusters, each mostly interacting with its cluster's items (popular first)."""
    rng = np.random.default_rng([seed, zlib.crc32(last_day.isoformat().encode())])
    half = items // 2
    popularity = 1.0 / np.arange(1, half + 1)
    popularity /= popularity.sum()
    rows = []
    for n in range(days):
        day = last_day - dt.timedelta(days=days - 1 - n)
        if day == last_day and not holdout:
            continue
        for u in range(users):
            cluster = u % 2
            for e in range(per_day):
                own = rng.random() < 0.9
                item = rng.choice(half, p=popularity) + (cluster if own else 1 - cluster) * half
                kind = rng.choice(["page_view", "click", "play", "purchase", "search"], p=[.4, .3, .15, .05, .1])
                ts = dt.datetime.combine(day, dt.time(8)) + dt.timedelta(minutes=u * 5 + e)
                rows.append((f"e{day:%m%d}-{u}-{e}", str(kind), ts, f"user{u:03d}",
                             None if kind == "search" else f"item{item:03d}"))
    return rows


def write_bronze(spark, lake: Lake, rows: list[tuple]) -> None:
    frame = spark.createDataFrame(rows, "event_id string, event_type string, event_ts timestamp, user_id string, "
                                        "item_id string").withColumn("dt", F.to_date("event_ts"))
    frame.write.mode("append").partitionBy("dt").parquet(lake.table("bronze", "clickstream"))


def run_report(lake: Lake, day: dt.date = DAY) -> dict:
    return json.loads(storage.read_bytes(f"{lake.partition('reports', 'als', day)}/run.json"))


@pytest.fixture(scope="module")
def trained(spark, tmp_path_factory):
    """A lake with six days of clustered clickstream and one trained, promoted model for DAY."""
    root = tmp_path_factory.mktemp("als") / "lake"
    lake = Lake(root.as_uri())
    write_bronze(spark, lake, clustered_events(DAY, WINDOW))
    report = als_train.run(spark, lake, DAY, small_settings())
    return root, report


def copy_of(trained, tmp_path) -> Lake:
    shutil.copytree(trained[0], tmp_path / "lake")
    return Lake((tmp_path / "lake").as_uri())


def test_interaction_weights_decay_and_reasons(spark):
    ts = dt.datetime(2026, 11, 19, 0, 0)
    events = spark.createDataFrame([
        ("u1", "i1", "click", ts), ("u1", "i1", "purchase", ts - dt.timedelta(days=14)),
        ("u1", None, "search", ts), ("u2", "i2", "logout", ts),
    ], "user_id string, item_id string, event_type string, event_ts timestamp")
    rows = ix.from_events(events, {"click": 2.0, "purchase": 8.0})
    assert rows.count() == 2  # the search (no item) and the unweighted type are not interactions
    decayed = ix.decayed(rows.withColumn("user", F.lit(1)).withColumn("item", F.lit(7)), ts, half_life_days=14)
    (row,) = ix.confidences(decayed).collect()
    assert row["confidence"] == pytest.approx(2.0 + 8.0 / 2) and row["events"] == 2  # one half-life: half

    bad = spark.createDataFrame([
        ("u", "i", 1.0, ts), (None, "i", 1.0, ts), (" ", "i", 1.0, ts), ("u", None, 1.0, ts), ("u", "i", 1.0, None),
        ("u", "i", float("nan"), ts), ("u", "i", None, ts), ("u", "i", -0.5, ts), ("u", "i", float("inf"), ts),
    ], "user_id string, item_id string, weight double, event_ts timestamp")
    assert [r["reason"] for r in ix.with_reason(bad).collect()] == [
        None, "missing_user_id", "missing_user_id", "missing_item_id", "missing_event_ts",
        "weight_not_a_number", "weight_not_a_number", "negative_weight", "infinite_weight"]


def test_ids_are_stable_appended_and_bounded(spark):
    existing = spark.createDataFrame([("b", 0, DAY), ("a", 1, DAY)], ix.MAP_SCHEMA)
    keys = spark.createDataFrame([("d",), ("a",), ("c",), ("b",), ("c",)], "key string")
    full, overflow = ix.assign_ids(keys, existing, max_id=10, day=DAY)
    assert sorted(map(tuple, full.select("key", "id").collect())) == [("a", 1), ("b", 0), ("c", 2), ("d", 3)]
    assert overflow.count() == 0
    again, _ = ix.assign_ids(keys, full, max_id=10, day=DAY)  # a rerun assigns nothing new
    assert sorted(map(tuple, again.select("key", "id").collect())) == sorted(map(tuple, full.select("key", "id")
                                                                                  .collect()))
    bounded, overflow = ix.assign_ids(keys, existing, max_id=2, day=DAY)  # room for one more id only
    assert sorted(r["key"] for r in bounded.collect()) == ["a", "b", "c"]
    assert [r["key"] for r in overflow.collect()] == ["d"]
    empty = spark.createDataFrame([], ix.MAP_SCHEMA)
    fresh, _ = ix.assign_ids(keys, empty, max_id=10, day=DAY)
    assert sorted(r["id"] for r in fresh.collect()) == [0, 1, 2, 3]


def test_ranking_metrics_match_hand_computation(spark):
    recs = spark.createDataFrame([(1, 1, 10), (1, 2, 11), (1, 3, 12), (2, 1, 20)], "user int, rank int, item int")
    labels = spark.createDataFrame([(1, [11, 13]), (2, [21]), (3, [30])], "user int, relevant array<int>")
    got = ranking_metrics(recs, labels, k=3, catalog_size=10)
    # user 1: hit at rank 2 of 3; user 2: no hit; user 3: no recommendations at all (counts as zeros)
    assert got["users_evaluated"] == 3
    assert got["precision_at_k"] == pytest.approx((1 / 3) / 3)
    assert got["recall_at_k"] == pytest.approx((1 / 2) / 3)
    ideal = 1 + 1 / np.log2(3)
    assert got["ndcg_at_k"] == pytest.approx((1 / np.log2(3)) / ideal / 3)
    assert got["map_at_k"] == pytest.approx((1 / 2) / 2 / 3)  # AP@3 = (1/2) / min(3, 2)
    assert got["coverage"] == pytest.approx(4 / 10)
    empty = ranking_metrics(recs, labels.limit(0), k=3, catalog_size=10)
    assert empty["ndcg_at_k"] is None and "empty holdout" in empty["not_computable"]


def test_cold_users_get_the_fallback(spark):
    model = spark.createDataFrame([(1, 1, 10)], "user int, rank int, item int")
    fallback = spark.createDataFrame([(1, 1, 99), (2, 1, 99)], "user int, rank int, item int")
    assert sorted(map(tuple, with_fallback(model, fallback).collect())) == [(1, 1, 10), (2, 1, 99)]


def test_run_trains_evaluates_and_promotes(trained):
    root, report = trained
    lake = Lake(root.as_uri())
    assert report["status"] == "trained" and report["promoted"], report
    model, popular = report["metrics"]["model"], report["metrics"]["popularity"]
    assert model["users_evaluated"] == popular["users_evaluated"] > 20
    assert model["ndcg_at_k"] > popular["ndcg_at_k"]  # the clusters are learnable; popularity ignores them
    assert report["blas"].endswith("JNIBLAS")  # native BLAS (Debian libopenblas0)
    assert report["engine"] == "implicit"  # a small split: the driver solves it (training.engine: auto)
    assert registry.champion(lake)["version"] == report["version"]
    assert report["version"].startswith(f"20261120-{small_settings().params.key()}-")
    version = Path(root / "models" / "als" / "versions" / report["version"])
    for output in ("model", "user_embeddings", "item_embeddings", "recommendations", "similar_items",
                   "popular_items", "metrics.json", "_manifest.json"):
        assert (version / output).exists(), output
    manifest = registry.manifest(lake, report["version"])
    assert manifest["data_window"] == {"first": "2026-11-15", "train_end": "2026-11-19",
                                       "holdout_start": "2026-11-20", "last": "2026-11-20"}
    assert manifest["params"]["rank"] == 8 and manifest["code_version"] and manifest["decision"]["promote"]
    assert not list(root.rglob("_staging")) and not list(root.glob("_checkpoints/*/*"))
    assert not list(root.glob("_commits/*/*.json"))  # the commit completed


def test_recommendations_exclude_consumed_items_and_are_complete(trained, spark):
    root, report = trained
    version = root / "models" / "als" / "versions" / report["version"]
    recs = spark.read.parquet(str(version / "recommendations"))
    events = spark.read.parquet(str(root / "bronze" / "clickstream")).where(F.col("item_id").isNotNull())
    assert recs.join(events, ["user_id", "item_id"]).count() == 0  # nothing the user already consumed
    per_user = recs.groupBy("user_id").agg(F.count(F.lit(1)).alias("n"), F.min("rank").alias("first"))
    assert per_user.count() == events.select("user_id").distinct().count()
    assert {tuple(r) for r in per_user.select("n", "first").distinct().collect()} == {(5, 1)}
    assert recs.where(F.isnan("score")).count() == 0
    similar = spark.read.parquet(str(version / "similar_items"))
    assert similar.where(F.col("item_id") == F.col("similar_item_id")).count() == 0
    assert similar.groupBy("item_id").count().where("count != 3").count() == 0
    embeddings = spark.read.parquet(str(version / "user_embeddings"))
    assert embeddings.where(F.size("embedding") != 8).count() == 0


def test_a_rerun_of_the_champions_night_never_touches_the_champion(trained, spark, tmp_path):
    lake = copy_of(trained, tmp_path)
    champion = registry.champion(lake)
    served = Path(lake.model_version("als", champion["version"]).removeprefix("file://"))
    files_before = {p: p.read_bytes() for p in served.rglob("*") if p.is_file()}
    before_users = sorted(map(tuple, spark.read.parquet(lake.id_map("users")).select("key", "id").collect()))
    rerun = als_train.run(spark, lake, DAY, small_settings())
    assert rerun["version"] != champion["version"]  # a version of its own, never the champion's directory
    assert not rerun["promoted"] and f"does not beat the champion {champion['version']}" in rerun["reason"]
    assert registry.champion(lake) == champion
    assert {p: p.read_bytes() for p in served.rglob("*") if p.is_file()} == files_before  # not one byte changed
    after_users = sorted(map(tuple, spark.read.parquet(lake.id_map("users")).select("key", "id").collect()))
    assert after_users == before_users  # nothing renumbered, nothing added
    assert sorted(v["version"] for v in registry.versions(lake)) == sorted([champion["version"], rerun["version"]])


def test_next_night_keeps_ids_appends_new_users_and_judges_the_champion(trained, spark, tmp_path):
    lake = copy_of(trained, tmp_path)
    nxt = DAY + dt.timedelta(days=1)
    newcomer = [("new-1", "click", dt.datetime.combine(DAY, dt.time(23)), "zz-newcomer", "item001")]
    write_bronze(spark, lake, [r for r in clustered_events(nxt, 1, seed=1)] + newcomer)
    old = dict(spark.read.parquet(lake.table("gold", "als/id_map/users")).select("key", "id").collect())
    report = als_train.run(spark, lake, nxt, small_settings(**{"training__params": {
        "rank": 8, "reg_param": 0.05, "alpha": 10.0, "max_iter": 9}}))
    new = dict(spark.read.parquet(lake.table("gold", "als/id_map/users")).select("key", "id").collect())
    assert {k: new[k] for k in old} == old and new["zz-newcomer"] == max(old.values()) + 1
    champion = report["metrics"]["champion"]
    assert champion["version"] == trained[1]["version"] and champion["ndcg_at_k"] is not None
    assert report["status"] == "trained" and trained[1]["version"] in report["reason"]


def test_model_that_loses_to_popularity_is_not_promoted(trained, spark, tmp_path):
    lake = copy_of(trained, tmp_path)
    champion = registry.champion(lake)
    # an absurd regularisation shrinks every factor to ~0: the ranking is noise
    weak = small_settings(**{"training__params": {"rank": 2, "reg_param": 1e6, "alpha": 1.0, "max_iter": 2}})
    report = als_train.run(spark, lake, DAY, weak)
    assert report["status"] == "trained" and not report["promoted"]
    assert "does not beat the popularity baseline" in report["reason"]
    assert registry.champion(lake) == champion
    assert len(registry.versions(lake)) == 2  # the losing version is kept for inspection, not served


def test_search_keeps_the_best_trial(trained, spark, tmp_path):
    lake = copy_of(trained, tmp_path)
    settings = small_settings(**{"training__search": {"max_trials": 2, "grid": {"reg_param": [0.05, 1e6]}}})
    report = als_train.run(spark, lake, DAY, settings, search=True)
    metrics = json.loads(storage.read_bytes(f"{report['model']}/metrics.json"))
    assert [t["params"]["reg_param"] for t in metrics["trials"]] == [0.05, 1e6]  # the configured params first
    best = max(metrics["trials"], key=lambda t: t["ndcg_at_k"])
    assert report["params"] == best["params"] and metrics["model"]["ndcg_at_k"] == best["ndcg_at_k"]
    assert report["version"].startswith(f"20261120-{settings.with_params(best['params']).params.key()}-")


def test_too_few_interactions_skip_and_keep_the_champion(trained, spark, tmp_path):
    lake = copy_of(trained, tmp_path)
    champion = registry.champion(lake)
    report = als_train.run(spark, lake, DAY, small_settings(**{"interactions__min_interactions": 10**6}))
    assert report["status"] == "skipped" and not report["promoted"]
    assert report["reason"].startswith("too few interactions to train:") and "< 1000000" in report["reason"]
    assert f"champion kept ({champion['version']})" in report["reason"]
    assert registry.champion(lake) == champion and run_report(lake)["status"] == "skipped"


def test_backfill_cannot_be_compared_with_a_newer_champion(trained, spark, tmp_path):
    lake = copy_of(trained, tmp_path)
    report = als_train.run(spark, lake, DAY - dt.timedelta(days=1), small_settings(
        **{"interactions__min_interactions": 10, "interactions__min_users": 2, "interactions__min_items": 2}))
    assert report["status"] == "trained" and not report["promoted"]
    assert "inside this holdout (from 2026-11-19)" in report["metrics"]["champion"]["not_comparable"]
    assert registry.champion(lake)["version"] == trained[1]["version"]


def test_empty_holdout_trains_but_never_promotes(spark, tmp_path):
    lake = Lake((tmp_path / "lake").as_uri())
    write_bronze(spark, lake, clustered_events(DAY, WINDOW, holdout=False))
    report = als_train.run(spark, lake, DAY, small_settings())
    assert report["status"] == "trained" and not report["promoted"]
    assert "could not be evaluated (empty holdout" in report["reason"]
    assert registry.champion(lake) is None


def test_export_with_bad_rows_single_interactions_and_exhausted_ids(spark, tmp_path):
    lake = Lake((tmp_path / "lake").as_uri())
    good = [(u, i, 1.0, ts) for _, _, ts, u, i in clustered_events(DAY, WINDOW) if i is not None]
    ts = dt.datetime.combine(DAY - dt.timedelta(days=2), dt.time(12))
    bad = [("user001", "item001", float("nan"), ts), ("user001", "item002", -1.0, ts), ("user002", None, 1.0, ts),
           ("user003", "item003", None, ts)]
    lonely = [("solo-user", "item000", 1.0, ts), ("user000", "solo-item", 1.0, ts)]  # one interaction each
    export = str(tmp_path / "export.parquet")
    (spark.createDataFrame(good + bad + lonely, "user_id string, item_id string, weight double, event_ts timestamp")
     .write.parquet(export))
    # 82 users for ids 0..80: the last in key order ("zz-late") finds the id space full
    tail = [("zz-late", "item001", 1.0, ts)]
    spark.createDataFrame(tail, "user_id string, item_id string, weight double, event_ts timestamp").write.mode(
        "append").parquet(export)
    report = als_train.run(spark, lake, DAY, small_settings(**{"interactions__max_id": 80}), export=export)
    counts = report["counts"]
    assert counts["quarantined:weight_not_a_number"] == 2 and counts["quarantined:negative_weight"] == 1
    assert counts["quarantined:missing_item_id"] == 1 and counts["quarantined:id_space_exhausted:user"] == 1
    quarantined = spark.read.parquet(report["quarantine"])
    assert quarantined.count() == counts["quarantined"] == 5 and quarantined.where("reason IS NULL").count() == 0
    assert report["status"] == "trained"
    version = lake.model_version("als", report["version"])
    embeddings = spark.read.parquet(f"{version}/user_embeddings")
    assert embeddings.where("user_id = 'solo-user'").count() == 1
    assert embeddings.where("user_id = 'zz-late'").count() == 0
    assert spark.read.parquet(f"{version}/item_embeddings").where("item_id = 'solo-item'").count() == 1
    solo = spark.read.parquet(f"{version}/recommendations").where("user_id = 'solo-user'")
    assert solo.count() == 5 and solo.where("item_id = 'item000'").count() == 0


def test_checkpoints_cut_the_lineage_of_long_runs(spark, tmp_path):
    ratings = spark.createDataFrame([(u, i, float(1 + (u * i) % 3)) for u in range(20) for i in range(15)
                                     if (u + i) % 3], "user int, item int, confidence float")
    settings = small_settings(**{"training__checkpoint_interval": 2})
    checkpoint_dir = (tmp_path / "checkpoints").as_uri()
    fitted = train(ratings, settings.params.__class__(4, 0.1, 1.0, 12), settings, checkpoint_dir)
    assert list((tmp_path / "checkpoints").rglob("part-*"))  # the factor RDDs were checkpointed
    assert fitted.model.userFactors.count() == 20
    fitted.release()


def test_diverged_factors_are_detected(spark):
    """The guard that stops a diverged fit from being published (real factor tables, NaN and inf in them)."""
    schema = "id int, features array<float>"

    class Fitted:  # the two attributes of an ALSModel the guard reads
        userFactors = spark.createDataFrame([(0, [1.0, float("nan")]), (1, [0.1, 0.2])], schema)
        itemFactors = spark.createDataFrame([(0, [float("-inf"), 0.0]), (1, [0.5, 0.5])], schema)

    assert non_finite_factors(Fitted) == 2


def test_main_refuses_bad_params_before_starting_spark(capsys):
    assert als_job.main(["--date", "2026-11-20", "--params", '{"rank": -1}']) == 1
    assert "rank must be an integer in [1, 512], got -1" in capsys.readouterr().err
    assert als_job.main(["--date", "2026-11-20", "--params", "[1]"]) == 1
    assert "--params must be a JSON object" in capsys.readouterr().err


def test_both_engines_give_the_same_outputs_and_learn_the_clusters(trained, spark, tmp_path):
    """Spark MLlib (what a split beyond single_node_max_interactions gets) on the same night: the same version
    layout and schemas, a promotable model, quality close to the driver engine's."""
    root, by_implicit = trained
    lake = Lake((tmp_path / "lake").as_uri())
    write_bronze(spark, lake, clustered_events(DAY, WINDOW))
    by_mllib = als_train.run(spark, lake, DAY, small_settings(**{"training__engine": "spark"}))
    assert by_mllib["engine"] == "spark" and by_mllib["status"] == "trained" and by_mllib["promoted"]
    mllib, driver = by_mllib["metrics"]["model"], by_implicit["metrics"]["model"]
    assert mllib["ndcg_at_k"] > by_mllib["metrics"]["popularity"]["ndcg_at_k"]
    assert abs(mllib["ndcg_at_k"] - driver["ndcg_at_k"]) < 0.1, (mllib, driver)
    for output in ("user_embeddings", "item_embeddings", "recommendations", "similar_items", "popular_items"):
        schemas = [spark.read.parquet(f"{where}/models/als/versions/{report['version']}/{output}").schema
                   for where, report in ((root, by_implicit), (tmp_path / "lake", by_mllib))]
        assert schemas[0] == schemas[1], output
    saved = ALSModel.load(f"{(root / 'models/als/versions' / by_implicit['version'] / 'model').as_uri()}")
    assert saved.rank == 8 and saved.userFactors.count() == 80  # the driver's model saves and loads as MLlib's

