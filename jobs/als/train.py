"""Train ALS user/item embeddings for one night, judge them on a time-based holdout, version them.

For run date D and the ALS settings:

1. interactions from the validated clickstream (`bronze/clickstream`) of the `window_days` up
   to D, or from an export: weight per event type, time decay, unusable rows quarantined with a
   reason (`quarantine/als_interactions/dt=D`); stable integer ids (`gold/als/id_map/{users,items}`);
2. the last `holdout_days` are the holdout; ALS(implicitPrefs=True) trains on the days before
   (optionally a small hyperparameter search): Spark MLlib with checkpoints and native BLAS, or the `implicit`
   library on the driver for a split that fits there (`training.engine`);
3. precision/recall/NDCG/MAP@K and coverage for the model, the popularity baseline and the
   champion, all on the same holdout; the champion pointer moves only when the model beats both;
4. the version is written aside and swapped in: model, embeddings, top-K recommendations
   (consumed items excluded), similar items, popular items, metrics.json, _manifest.json; the
   night's decision goes to `reports/als/dt=D/run.json`.

Too little data is a skip with its reason, never a failure; the champion is kept.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import time
from dataclasses import dataclass
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import Window as SparkWindow
from pyspark.sql import functions as F

from jobs.als import STAGE, registry
from jobs.als import interactions as ix
from jobs.als.evaluation import Judging, evaluate, judge_champion
from jobs.als.interactions import DataWindow, labelled
from jobs.als.model import Trained, blas_implementation, engine_for, non_finite_factors, search_space, train
from jobs.als.settings import AlsSettings
from jobs.als.topk import model_recs, similar_items
from jobs.common import storage
from jobs.common.errors import PipelineError
from jobs.common.paths import Lake
from jobs.common.run import Output, Run
from jobs.common.runner import Outcome, new_run_id
from jobs.common.spark import LakeFS, Persisted, read_clickstream

log = logging.getLogger(__name__)
JOB = "als_train"


@dataclass
class Prepared:
    """Tonight's training data, holdout and id maps (persisted until the run releases them)."""

    train: DataFrame      # user, item, confidence
    holdout: DataFrame    # user, item
    everything: DataFrame  # user, item: train and holdout, what serving excludes
    users: DataFrame      # id maps, not yet published
    items: DataFrame
    counts: dict[str, Any]
    quarantine: DataFrame


def prepare(rows: DataFrame, lake: Lake, day: dt.date, window: DataWindow, settings: AlsSettings,
            cache: Persisted) -> Prepared:
    spark = rows.sparkSession
    rows = cache.keep(ix.with_reason(ix.in_window(rows, window)))
    good = rows.where(F.col("reason").isNull()).drop("reason")
    maps = {}
    for kind, column in (("users", "user_id"), ("items", "item_id")):
        # keys that got no id show up as null ids in with_ids() below and are quarantined there
        full, _ = ix.assign_ids(good.select(F.col(column).alias("key")), _read_map(spark, lake, kind),
                                settings.max_id, day)
        maps[kind] = cache.keep(full)
        maps[kind].count()
    tagged = ix.with_ids(good, maps["users"], maps["items"])
    no_id = (F.when(F.col("user").isNull(), F.lit("id_space_exhausted:user"))
             .when(F.col("item").isNull(), F.lit("id_space_exhausted:item")))
    quarantine = rows.where(F.col("reason").isNotNull()).drop("holdout").unionByName(
        tagged.where(no_id.isNotNull()).select(*ix.INTERACTION_COLUMNS, no_id.alias("reason")))
    usable = tagged.where(no_id.isNull())
    train_rows = ix.decayed(usable.where(~F.col("holdout")), window.cutoff(), settings.half_life_days)
    train_set = cache.keep(ix.confidences(train_rows).select("user", "item", F.col("confidence").cast("float")))
    holdout = cache.keep(usable.where(F.col("holdout")).select("user", "item").distinct())
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
    if LakeFS(spark).exists(lake.id_map(kind)):
        return spark.read.parquet(lake.id_map(kind))
    return spark.createDataFrame([], ix.MAP_SCHEMA)


def too_little(counts: dict[str, Any], settings: AlsSettings) -> str | None:
    """Why the training split is too small to train on, or None."""
    short = [f"{counts[key]} {what} < {minimum}" for key, what, minimum in (
        ("train_interactions", "interactions", settings.min_interactions),
        ("train_users", "users", settings.min_users), ("train_items", "items", settings.min_items))
        if counts[key] < minimum]
    return "too few interactions to train: " + ", ".join(short) if short else None


def fit_best(prep: Prepared, judging: Judging, settings: AlsSettings, search: bool,
             checkpoint_dir: str) -> tuple[list[Trained], Trained, dict[str, Any], list[dict[str, Any]]]:
    """Train the configured params (or each search trial) and keep the best on the primary metric.

    Returns every trained model too, so the run can release their cached factors."""
    models, best, best_metrics, trials = [], None, None, []
    engine = engine_for(settings, prep.counts["train_interactions"])
    for params in (search_space(settings) if search else [settings.params]):
        trained = train(prep.train, params, settings, checkpoint_dir, engine)
        models.append(trained)
        bad = non_finite_factors(trained.model)
        if bad:
            raise ArithmeticError(f"ALS with {params} produced {bad} non-finite factor vectors; nothing published")
        metrics = evaluate(trained.model, judging, settings)
        trials.append({"params": dataclasses.asdict(params), "engine": engine, "seconds": round(trained.seconds, 2),
                       **metrics})
        log.info("trial %s (%s): %s=%s in %.1fs", params, engine, settings.primary_metric,
                 metrics[settings.primary_metric], trained.seconds)
        value = metrics[settings.primary_metric]
        if best is None or (value is not None and (best_metrics[settings.primary_metric] is None
                                                   or value > best_metrics[settings.primary_metric])):
            best, best_metrics = trained, metrics
    return models, best, best_metrics, trials


def write_version(staging: str, version: str, best: Trained, prep: Prepared, popular: DataFrame,
                  metrics: dict[str, Any], settings: AlsSettings) -> None:
    """Every artefact of the version into one staged directory: it is published whole or not at all."""
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
    storage.write_atomic(f"{staging}/metrics.json", json.dumps(metrics, indent=2).encode())


def map_outputs(this: Run, prep: Prepared) -> list[Output]:
    """The id maps, staged whole (append-only: ids never change, new keys get new ones)."""
    outputs = []
    for kind, frame in (("users", prep.users), ("items", prep.items)):
        staging = this.table_staging("gold", f"als_id_map_{kind}")
        frame.coalesce(1).write.parquet(staging)
        outputs.append(Output(staging, this.lake.id_map(kind)))
    return outputs


def quarantine_output(this: Run, prep: Prepared) -> Output:
    staging = this.staging("quarantine", "als_interactions")
    prep.quarantine.withColumn("run_id", F.lit(this.run_id)).coalesce(1).write.parquet(staging)
    return Output(staging, this.lake.partition("quarantine", "als_interactions", this.day))


def file_output(this: Run, name: str, final: str, document: dict[str, Any]) -> Output:
    """A small JSON file (the run report, the champion pointer) staged and published with the rest."""
    staged = this.file_staging("models", name)
    this.write_json(staged, document)
    return Output(staged, final)


def run(spark: SparkSession, lake: Lake, day: dt.date, settings: AlsSettings, search: bool = False,
        export: str | None = None, run_id: str | None = None) -> dict[str, Any]:
    """One night: prepare, train or skip, judge, publish. Returns the run report.

    The id maps, the new version, the champion pointer, the quarantine and the report are one commit of
    the `models/als` group: all of it or nothing, and one training run at a time."""
    cache = Persisted()
    try:
        with Run(JOB, lake, day, run_id or new_run_id(), group=f"models/{registry.MODEL}", fs=LakeFS(spark)) as this:
            return _run(spark, this, settings, search, export, cache)
    finally:
        cache.release()


def _run(spark: SparkSession, this: Run, settings: AlsSettings, search: bool, export: str | None,
         cache: Persisted) -> dict[str, Any]:
    lake, day = this.lake, this.day
    started = time.perf_counter()
    window = DataWindow.for_run(day, settings)
    if export:
        rows, missing = ix.read_export(spark, export), []
    else:
        events, missing = read_clickstream(spark, lake, window.first, window.last)
        rows = ix.from_events(events, settings.event_weights)
    prep = prepare(rows, lake, day, window, settings, cache)
    report: dict[str, Any] = {
        "run_date": day.isoformat(), **this.header(),
        "source": export or lake.table("bronze", "clickstream"), "missing_days": missing,
        "data_window": window.as_dict(), "params": dataclasses.asdict(settings.params), "search": search,
        "counts": prep.counts, "quarantine": lake.partition("quarantine", "als_interactions", day),
        "report": lake.report_file(STAGE, day),
    }
    outputs = [quarantine_output(this, prep)]
    reason = too_little(prep.counts, settings)
    current = registry.champion(lake)
    if reason:
        report.update(status="skipped", reason=f"{reason}; champion kept ({current['version'] if current else 'none'})",
                      promoted=False)
        this.publish([*outputs, file_output(this, "run.json", lake.report_file(STAGE, day), report)])
        return report
    checkpoint_dir = lake.checkpoints(JOB, this.run_id)
    models: list[Trained] = []
    try:
        blas = blas_implementation(spark)
        popular = cache.keep(ix.popularity(prep.train))
        judging = Judging.of(prep.train, prep.holdout, popular, prep.counts["train_items"], settings)
        try:
            models, best, model_metrics, trials = fit_best(prep, judging, settings, search, checkpoint_dir)
            version = registry.version_id(day, best.params.key(), this.txn.commit_id)
            metrics = {"k": settings.k, "primary_metric": settings.primary_metric, "model": model_metrics,
                       "popularity": evaluate(None, judging, settings),
                       "champion": judge_champion(lake, window, judging, settings),
                       "trials": trials}
        finally:
            judging.release()
        decision = registry.decide(metrics["model"], metrics["popularity"], metrics["champion"], settings)
        manifest = {**{k: report[k] for k in ("run_date", "job", "code_version", "code_artifact", "source",
                                               "data_window", "counts")},
                    "version": version, "params": dataclasses.asdict(best.params), "search": search,
                    "training": {"engine": best.engine, "seconds": round(best.seconds, 2),
                                 "num_blocks": settings.num_blocks,
                                 "checkpoint_interval": settings.checkpoint_interval, "seed": settings.seed,
                                 "blas": blas},
                    "event_weights": settings.event_weights, "half_life_days": settings.half_life_days,
                    "metrics": {n: metrics[n] for n in ("k", "primary_metric", "model", "popularity")},
                    "decision": dataclasses.asdict(decision)}
        staged_version = this.table_staging("models", f"{registry.MODEL}_version")
        write_version(staged_version, version, best, prep, popular, metrics, settings)
    finally:
        for trained in models:
            trained.release()
        LakeFS(spark).delete(checkpoint_dir)
    path = lake.model_version(registry.MODEL, version)
    if this.fs.exists(path):  # ids carry the commit's random suffix; a version, maybe the champion, is never replaced
        raise PipelineError(f"model version {version} already exists at {path}; not replacing it")
    outputs += [*map_outputs(this, prep), Output(staged_version, path, manifest)]
    if decision.promote:
        outputs.append(file_output(this, "champion.json", lake.champion(registry.MODEL), {
            "version": version, "run_date": day.isoformat(), "run_id": this.run_id,
            "promoted_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "metric": settings.primary_metric, "value": metrics["model"][settings.primary_metric],
            "reason": decision.reason}))
    report.update(status="trained", version=version, model=path, params=dataclasses.asdict(best.params),
                  engine=best.engine,
                  promoted=decision.promote, reason=decision.reason, blas=blas,
                  champion=version if decision.promote else (current["version"] if current else None),
                  metrics={n: metrics[n] for n in ("model", "popularity", "champion")},
                  seconds=round(time.perf_counter() - started, 1))
    this.publish([*outputs, file_output(this, "run.json", lake.report_file(STAGE, day), report)])
    return report


def summary(report: dict[str, Any]) -> Outcome:
    return Outcome(report, (f"{JOB} {report['status']}: {report['reason']}",))
