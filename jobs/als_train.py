"""Train ALS user/item embeddings for one night, judge them on a time-based holdout, version them.

For run date D and the settings in `include/als.yaml`:

1. interactions from the validated clickstream (`bronze/clickstream`) of the `window_days` up
   to D, or from an export (`--interactions FILE`: user_id, item_id, weight, event_ts): weight
   per event type, time decay, unusable rows quarantined with a reason
   (`quarantine/als_interactions/dt=D`); stable integer ids (`gold/als/id_map/{users,items}`);
2. the last `holdout_days` are the holdout; ALS(implicitPrefs=True) trains on the days before
   (optionally a small hyperparameter search), with checkpoints and native BLAS;
3. precision/recall/NDCG/MAP@K and coverage for the model, the popularity baseline and the
   champion, all on the same holdout; the champion pointer moves only when the model beats both;
4. the version is written aside and swapped in: model, embeddings, top-K recommendations
   (consumed items excluded), similar items, popular items, metrics.json, _manifest.json; the
   night's decision goes to `reports/als/dt=D/run.json`.

Too little data is a skip with its reason (exit 0), never a failure; the champion is kept.

    spark-submit jobs/als_train.py --date 2026-11-20 [--params '{"rank": 64}'] [--search] [--interactions FILE]
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import logging
import sys
import time
import uuid
from dataclasses import dataclass
from typing import Any

from pyspark import StorageLevel
from pyspark.ml.recommendation import ALSModel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import Window as SparkWindow
from pyspark.sql import functions as F

from jobs.als import interactions as ix
from jobs.als import registry
from jobs.als.evaluation import ranking_metrics, with_fallback
from jobs.als.model import Trained, blas_implementation, non_finite_factors, search_space, train
from jobs.als.settings import AlsSettings, SettingsError
from jobs.als.settings import load as load_settings
from jobs.als.topk import recommend
from jobs.common import config, exit_codes, storage
from jobs.common.paths import Lake, date_arg
from jobs.common.spark import LakeFS, get_spark, read_clickstream

log = logging.getLogger("als_train")
JOB = "als_train"


# ---------------------------------------------------------------- pure transforms

@dataclass(frozen=True)
class Window:
    """The data one model sees: training days, then the holdout days, ending with the run date."""

    first: dt.date
    holdout_start: dt.date
    last: dt.date

    @classmethod
    def for_run(cls, day: dt.date, settings: AlsSettings) -> Window:
        return cls(day - dt.timedelta(days=settings.window_days - 1),
                   day - dt.timedelta(days=settings.holdout_days - 1), day)

    @property
    def train_end(self) -> dt.date:
        return self.holdout_start - dt.timedelta(days=1)

    def cutoff(self) -> dt.datetime:
        return dt.datetime.combine(self.holdout_start, dt.time())

    def as_dict(self) -> dict[str, str]:
        return {"first": self.first.isoformat(), "train_end": self.train_end.isoformat(),
                "holdout_start": self.holdout_start.isoformat(), "last": self.last.isoformat()}


def in_window(rows: DataFrame, window: Window) -> DataFrame:
    """Rows with an event time inside the window (or none, to be quarantined), tagged `holdout` after the cutoff."""
    end = dt.datetime.combine(window.last + dt.timedelta(days=1), dt.time())
    inside = (F.col("event_ts") >= F.lit(dt.datetime.combine(window.first, dt.time()))) & (F.col("event_ts") < end)
    return (rows.where(inside | F.col("event_ts").isNull())
            .withColumn("holdout", F.col("event_ts") >= F.lit(window.cutoff())))


def popularity_recs(users: DataFrame, popular: DataFrame, k: int, block: int) -> DataFrame:
    """Most popular items not yet consumed, per user (`user, exclude`): a rank-1 dot product."""
    queries = users.select(F.col("user").alias("id"), F.array(F.lit(1.0)).alias("features"), "exclude")
    items = popular.select(F.col("item").alias("id"), F.array(F.col("score")).alias("features"))
    return recommend(queries, items, k, block).withColumnRenamed("query", "user")


def model_recs(model: ALSModel, users: DataFrame, k: int, block: int) -> DataFrame:
    """ALS top-K for `users` (`user, exclude`) that have factors; the others get nothing here."""
    queries = model.userFactors.join(users.withColumnRenamed("user", "id"), "id")
    return recommend(queries, model.itemFactors, k, block).withColumnRenamed("query", "user")


def similar_items(model: ALSModel, k: int, block: int) -> DataFrame:
    """Top-K items by cosine of item factors, the item itself left out."""
    queries = model.itemFactors.withColumn("exclude", F.array(F.col("id")))
    return (recommend(queries, model.itemFactors, k, block, cosine=True)
            .withColumnRenamed("item", "similar_item").withColumnRenamed("query", "item"))


def labelled(frame: DataFrame, ids: dict[str, DataFrame]) -> DataFrame:
    """Each integer id column `c` becomes `c_idx`, with the external id beside it as `c_id`."""
    for column, id_map in ids.items():
        frame = frame.withColumnRenamed(column, f"{column}_idx").join(
            id_map.select(F.col("id").alias(f"{column}_idx"), F.col("key").alias(f"{column}_id")), f"{column}_idx")
    return frame


# ---------------------------------------------------------------- the run

@dataclass
class Prepared:
    """Tonight's training data, holdout and id maps (all persisted)."""

    train: DataFrame      # user, item, confidence
    holdout: DataFrame    # user, item
    everything: DataFrame  # user, item: train and holdout, what serving excludes
    users: DataFrame      # id maps, not yet published
    items: DataFrame
    counts: dict[str, Any]
    quarantine: DataFrame


def prepare(rows: DataFrame, lake: Lake, day: dt.date, window: Window, settings: AlsSettings) -> Prepared:
    spark = rows.sparkSession
    rows = ix.with_reason(in_window(rows, window)).persist(StorageLevel.MEMORY_AND_DISK)
    good = rows.where(F.col("reason").isNull()).drop("reason")
    maps = {}
    for kind, column in (("users", "user_id"), ("items", "item_id")):
        # keys that got no id show up as null ids in with_ids() below and are quarantined there
        full, _ = ix.assign_ids(good.select(F.col(column).alias("key")), _read_map(spark, lake, kind),
                                settings.max_id, day)
        maps[kind] = full.persist(StorageLevel.MEMORY_AND_DISK)
        maps[kind].count()
    tagged = ix.with_ids(good, maps["users"], maps["items"])
    no_id = (F.when(F.col("user").isNull(), F.lit("id_space_exhausted:user"))
             .when(F.col("item").isNull(), F.lit("id_space_exhausted:item")))
    quarantine = rows.where(F.col("reason").isNotNull()).drop("holdout").unionByName(
        tagged.where(no_id.isNotNull()).select(*ix.INTERACTION_COLUMNS, no_id.alias("reason")))
    usable = tagged.where(no_id.isNull())
    train_rows = ix.decayed(usable.where(~F.col("holdout")), window.cutoff(), settings.half_life_days)
    train_set = (ix.confidences(train_rows).select("user", "item", F.col("confidence").cast("float"))
                 .persist(StorageLevel.MEMORY_AND_DISK))
    holdout = usable.where(F.col("holdout")).select("user", "item").distinct().persist(StorageLevel.MEMORY_AND_DISK)
    everything = train_set.select("user", "item").unionByName(holdout).distinct()
    reasons = {r["reason"]: r["n"] for r in quarantine.groupBy("reason").agg(F.count(F.lit(1)).alias("n")).collect()}
    counts = {
        "events": good.count(), "quarantined": sum(reasons.values()),
        **{f"quarantined:{k}": v for k, v in sorted(reasons.items())},
        "train_interactions": train_set.count(), "train_users": train_set.select("user").distinct().count(),
        "train_items": train_set.select("item").distinct().count(), "holdout_pairs": holdout.count(),
    }
    return Prepared(train_set, holdout, everything, maps["users"], maps["items"], counts, quarantine)


def _read_map(spark: SparkSession, lake: Lake, kind: str) -> DataFrame:
    path = lake.table("gold", f"als/id_map/{kind}")
    if LakeFS(spark).exists(path):
        return spark.read.parquet(path)
    return spark.createDataFrame([], ix.MAP_SCHEMA)


def too_little(counts: dict[str, Any], settings: AlsSettings) -> str | None:
    """Why the training split is too small to train on, or None."""
    short = [f"{counts[key]} {what} < {minimum}" for key, what, minimum in (
        ("train_interactions", "interactions", settings.min_interactions),
        ("train_users", "users", settings.min_users), ("train_items", "items", settings.min_items))
        if counts[key] < minimum]
    return "too few interactions to train: " + ", ".join(short) if short else None


@dataclass
class Judging:
    """What every ranker is judged on: the same holdout users, labels and popularity fallback."""

    labels: DataFrame    # user, relevant: new items in the holdout
    users: DataFrame     # user, exclude: their training items, never recommended back
    baseline: DataFrame  # user, rank, item, score: the popularity ranking for them
    catalog: int         # items in training, for coverage

    @classmethod
    def of(cls, prep: Prepared, popular: DataFrame, settings: AlsSettings) -> Judging:
        labels = ix.holdout_labels(prep.holdout, prep.train).persist(StorageLevel.MEMORY_AND_DISK)
        users = labels.select("user").join(ix.consumed(prep.train), "user").persist(StorageLevel.MEMORY_AND_DISK)
        baseline = popularity_recs(users, popular, settings.k, settings.item_block_size).persist(
            StorageLevel.MEMORY_AND_DISK)
        return cls(labels, users, baseline, prep.counts["train_items"])


def evaluate(model: ALSModel | None, judging: Judging, settings: AlsSettings) -> dict[str, Any]:
    """Ranking metrics of a model (None: the popularity baseline) on the holdout users."""
    recs = judging.baseline
    if model is not None:
        recs = with_fallback(model_recs(model, judging.users, settings.k, settings.item_block_size), recs)
    return ranking_metrics(recs, judging.labels, settings.k, judging.catalog)


def judge_champion(lake: Lake, version: str, window: Window, judging: Judging,
                   settings: AlsSettings) -> dict[str, Any] | None:
    """The champion's metrics on tonight's holdout, or why it cannot be judged on it."""
    current = registry.champion(lake)
    if current is None:
        return None
    if current["version"] == version:
        return {"version": version}
    found = registry.manifest(lake, current["version"])
    if found is None:
        return {"version": current["version"], "not_comparable": "its version manifest is missing"}
    if dt.date.fromisoformat(found["data_window"]["train_end"]) >= window.holdout_start:
        return {"version": current["version"],
                "not_comparable": f"it was trained on data up to {found['data_window']['train_end']}, "
                                  f"inside this holdout (from {window.holdout_start})"}
    model = ALSModel.load(f"{lake.model_version(registry.MODEL, current['version'])}/model")
    return {"version": current["version"], **evaluate(model, judging, settings)}


def fit_best(prep: Prepared, judging: Judging, settings: AlsSettings, search: bool,
             checkpoint_dir: str) -> tuple[Trained, dict[str, Any], list[dict[str, Any]]]:
    """Train the configured params (or each search trial) and keep the best on the primary metric."""
    best, best_metrics, trials = None, None, []
    for params in (search_space(settings) if search else [settings.params]):
        trained = train(prep.train, params, settings, checkpoint_dir)
        bad = non_finite_factors(trained.model)
        if bad:
            raise ArithmeticError(f"ALS with {params} produced {bad} non-finite factor vectors; nothing published")
        metrics = evaluate(trained.model, judging, settings)
        trials.append({"params": dataclasses.asdict(params), "seconds": round(trained.seconds, 2), **metrics})
        log.info("trial %s: %s=%s in %.1fs", params, settings.primary_metric, metrics[settings.primary_metric],
                 trained.seconds)
        value = metrics[settings.primary_metric]
        if best is None or (value is not None and (best_metrics[settings.primary_metric] is None
                                                   or value > best_metrics[settings.primary_metric])):
            best, best_metrics = trained, metrics
    return best, best_metrics, trials


def write_version(lake: Lake, version: str, run_id: str, best: Trained, prep: Prepared, popular: DataFrame,
                  metrics: dict[str, Any], manifest: dict[str, Any], settings: AlsSettings) -> str:
    """Every artefact of the version into staging, then one rename: all of it or nothing."""
    staging = lake.model_staging(registry.MODEL, version, run_id)
    model, users, items = best.model, {"user": prep.users}, {"item": prep.items}
    tag = F.lit(version).alias("model_version")
    model.save(f"{staging}/model")
    outputs = {
        "user_embeddings": labelled(model.userFactors.withColumnRenamed("id", "user"), users)
        .select("user_id", "user_idx", F.col("features").alias("embedding"), tag),
        "item_embeddings": labelled(model.itemFactors.withColumnRenamed("id", "item"), items)
        .select("item_id", "item_idx", F.col("features").alias("embedding"), tag),
        # every user with factors trained on something, so each has a row in consumed()
        "recommendations": labelled(model_recs(model, ix.consumed(prep.everything), settings.top_k,
                                               settings.item_block_size), {**users, **items})
        .select("user_id", "user_idx", "rank", "item_id", "item_idx", "score", tag),
        "similar_items": labelled(similar_items(model, settings.similar_k, settings.item_block_size),
                                  {**items, "similar_item": prep.items})
        .select("item_id", "item_idx", "rank", "similar_item_id", "similar_item_idx", "score", tag),
        "popular_items": labelled(popular.orderBy(F.desc("score"), "item").limit(settings.popular_k), items)
        .select(F.row_number().over(SparkWindow.orderBy(F.desc("score"), "item_idx")).alias("rank"),
                "item_id", "item_idx", "score", tag),
    }
    for name, frame in outputs.items():
        frame.write.parquet(f"{staging}/{name}")
    fs = LakeFS(prep.train.sparkSession)
    fs.write_text(f"{staging}/metrics.json", json.dumps(metrics, indent=2))
    fs.write_text(Lake.manifest(staging), json.dumps(manifest, indent=2))
    final = lake.model_version(registry.MODEL, version)
    fs.publish(staging, final)
    return final


def publish_maps(lake: Lake, prep: Prepared, run_id: str) -> None:
    """Write the id maps aside and swap them in (append-only: an extra id is harmless if a later step fails)."""
    fs = LakeFS(prep.train.sparkSession)
    for kind, frame in (("users", prep.users), ("items", prep.items)):
        staging = f"{lake.table('gold', f'als/id_map/_staging_{kind}')}/run_id={run_id}"
        frame.coalesce(1).write.parquet(staging)
        fs.publish(staging, lake.table("gold", f"als/id_map/{kind}"))


def write_quarantine(lake: Lake, day: dt.date, prep: Prepared, run_id: str) -> str:
    staging = lake.staging("quarantine", "als_interactions", day, run_id)
    prep.quarantine.withColumn("run_id", F.lit(run_id)).coalesce(1).write.parquet(staging)
    final = lake.partition("quarantine", "als_interactions", day)
    LakeFS(prep.train.sparkSession).publish(staging, final)
    return final


def write_run_report(lake: Lake, day: dt.date, report: dict[str, Any]) -> str:
    uri = f"{lake.partition('reports', 'als', day)}/run.json"
    storage.write_atomic(uri, json.dumps(report, indent=2).encode())
    return uri


def run(spark: SparkSession, lake: Lake, day: dt.date, settings: AlsSettings, search: bool = False,
        export: str | None = None) -> dict[str, Any]:
    """One night: prepare, train or skip, judge, publish. Returns the run report."""
    started, run_id = time.perf_counter(), f"{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"
    window = Window.for_run(day, settings)
    if export:
        rows, missing = ix.read_export(spark, export), []
    else:
        events, missing = read_clickstream(spark, lake, window.first, window.last)
        rows = ix.from_events(events, settings.event_weights)
    prep = prepare(rows, lake, day, window, settings)
    report: dict[str, Any] = {
        "run_date": day.isoformat(), "run_id": run_id, "job": JOB, "code_version": config.code_version(),
        "source": export or lake.table("bronze", "clickstream"), "missing_days": missing,
        "data_window": window.as_dict(), "params": dataclasses.asdict(settings.params), "search": search,
        "counts": prep.counts, "quarantine": write_quarantine(lake, day, prep, run_id),
    }
    reason = too_little(prep.counts, settings)
    current = registry.champion(lake)
    if reason:
        report.update(status="skipped", reason=f"{reason}; champion kept ({current['version'] if current else 'none'})",
                      promoted=False)
        report["report"] = write_run_report(lake, day, report)
        return report
    checkpoint_dir = lake.checkpoints(JOB, run_id)
    try:
        blas = blas_implementation(spark)
        popular = ix.popularity(prep.train).persist(StorageLevel.MEMORY_AND_DISK)
        judging = Judging.of(prep, popular, settings)
        best, model_metrics, trials = fit_best(prep, judging, settings, search, checkpoint_dir)
        version = registry.version_id(day, best.params.key())
        metrics = {"k": settings.k, "primary_metric": settings.primary_metric, "model": model_metrics,
                   "popularity": evaluate(None, judging, settings),
                   "champion": judge_champion(lake, version, window, judging, settings),
                   "trials": trials}
        decision = registry.decide(metrics["model"], metrics["popularity"], metrics["champion"], settings, version)
        publish_maps(lake, prep, run_id)
        manifest = {**{k: report[k] for k in ("run_date", "run_id", "job", "code_version", "source",
                                               "data_window", "counts")},
                    "version": version, "params": dataclasses.asdict(best.params), "search": search,
                    "training": {"seconds": round(best.seconds, 2), "num_blocks": settings.num_blocks,
                                 "checkpoint_interval": settings.checkpoint_interval, "seed": settings.seed,
                                 "blas": blas},
                    "event_weights": settings.event_weights, "half_life_days": settings.half_life_days,
                    "metrics": {n: metrics[n] for n in ("k", "primary_metric", "model", "popularity")},
                    "decision": dataclasses.asdict(decision)}
        path = write_version(lake, version, run_id, best, prep, popular, metrics, manifest, settings)
    finally:
        LakeFS(spark).delete(checkpoint_dir)
    if decision.promote:
        registry.set_champion(lake, {"version": version, "run_date": day.isoformat(), "promoted_at":
                                     dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                                     "metric": settings.primary_metric,
                                     "value": metrics["model"][settings.primary_metric], "reason": decision.reason})
    report.update(status="trained", version=version, model=path, params=dataclasses.asdict(best.params),
                  promoted=decision.promote, reason=decision.reason, blas=blas,
                  champion=version if decision.promote else (current["version"] if current else None),
                  metrics={n: metrics[n] for n in ("model", "popularity", "champion")},
                  seconds=round(time.perf_counter() - started, 1))
    report["report"] = write_run_report(lake, day, report)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--date", required=True, type=date_arg, help="run date (UTC), YYYY-MM-DD")
    parser.add_argument("--lake-root", default=config.lake_root(), help="lake root URI (default: %(default)s)")
    parser.add_argument("--settings", default=None, help="ALS settings YAML (default: include/als.yaml)")
    parser.add_argument("--params", default="", help='hyperparameter overrides as JSON, e.g. \'{"rank": 64}\'')
    parser.add_argument("--search", nargs="?", const="true", default="false", choices=["true", "false"],
                        help="small hyperparameter search over the settings grid (`--search` = `--search true`)")
    parser.add_argument("--interactions", help="train on an export (Parquet, or CSV with a header) instead of "
                                               "the clickstream: user_id, item_id, weight, event_ts")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = load_settings(args.settings)
        overrides = json.loads(args.params) if args.params.strip() else {}
        if not isinstance(overrides, dict):
            raise SettingsError(f"--params must be a JSON object, got {args.params!r}")
        settings = settings.with_params(overrides)
    except (SettingsError, json.JSONDecodeError) as exc:
        print(f"{JOB} failed: {exc}", file=sys.stderr)
        return exit_codes.FAILED
    spark = get_spark(f"{JOB}:{args.date}")
    try:
        report = run(spark, Lake(args.lake_root), args.date, settings, args.search == "true", args.interactions)
    except (FileNotFoundError, ValueError, ArithmeticError) as exc:
        print(f"{JOB} failed: {exc}", file=sys.stderr)
        return exit_codes.FAILED
    finally:
        spark.stop()
    print(json.dumps(report, indent=2))
    print(f"{JOB} {report['status']}: {report['reason']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
