"""Ranking quality on the time-based holdout, with Spark ML's RankingEvaluator.

Binary relevance: an item is relevant to a user when they interacted with it in the holdout
and not in training. precision@K, recall@K, NDCG@K and MAP@K are Spark's definitions
(MAP@K divides by min(K, relevant items)); catalog coverage is the share of the training
catalog that appears in anyone's top K.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from pyspark import StorageLevel
from pyspark.ml.evaluation import RankingEvaluator
from pyspark.ml.recommendation import ALSModel
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from jobs.als import interactions as ix
from jobs.als import registry
from jobs.als.interactions import DataWindow
from jobs.als.settings import AlsSettings
from jobs.als.topk import model_recs, popularity_recs
from jobs.common.paths import Lake

METRICS = {"precision_at_k": "precisionAtK", "recall_at_k": "recallAtK", "ndcg_at_k": "ndcgAtK",
           "map_at_k": "meanAveragePrecisionAtK"}


def ranked_lists(recs: DataFrame) -> DataFrame:
    """Long recommendations (`user, rank, item`) as one ordered array of item ids per user."""
    ordered = F.array_sort(F.collect_list(F.struct("rank", "item")))
    return recs.groupBy("user").agg(F.transform(ordered, lambda x: x["item"]).alias("items"))


def with_fallback(recs: DataFrame, fallback: DataFrame) -> DataFrame:
    """`recs`, plus the fallback's rows for users the model has nothing for (cold start)."""
    missing = fallback.join(recs.select("user").distinct(), "user", "left_anti")
    return recs.unionByName(missing)


def ranking_metrics(recs: DataFrame, labels: DataFrame, k: int, catalog_size: int) -> dict[str, Any]:
    """The four ranking metrics at k, coverage and the number of users judged.

    `recs`: `user, rank, item`; `labels`: `user, relevant array<int>`. A user without
    recommendations counts with an empty list (scores 0), never left out.
    """
    judged = labels.count()
    if judged == 0:
        return {"users_evaluated": 0, "not_computable": "empty holdout: no user came back with a new item",
                **dict.fromkeys(METRICS), "coverage": None}
    top = recs.where(F.col("rank") <= k)
    scored = (labels.join(ranked_lists(top), "user", "left")
              .select(F.coalesce("items", F.array().cast("array<int>")).cast("array<double>").alias("prediction"),
                      F.col("relevant").cast("array<double>").alias("label"))
              .cache())
    try:
        values = {name: float(RankingEvaluator(metricName=spark_name, k=k, predictionCol="prediction",
                                               labelCol="label").evaluate(scored))
                  for name, spark_name in METRICS.items()}
    finally:
        scored.unpersist()
    shown = top.join(labels.select("user"), "user").select("item").distinct().count()
    return {"users_evaluated": judged, **values, "coverage": shown / catalog_size if catalog_size else None}


@dataclass
class Judging:
    """What every ranker is judged on: the same holdout users, labels and popularity fallback (persisted)."""

    labels: DataFrame    # user, relevant: new items in the holdout
    users: DataFrame     # user, exclude: their training items, never recommended back
    baseline: DataFrame  # user, rank, item, score: the popularity ranking for them
    catalog: int         # items in training, for coverage

    @classmethod
    def of(cls, train: DataFrame, holdout: DataFrame, popular: DataFrame, catalog: int,
           settings: AlsSettings) -> Judging:
        labels = ix.holdout_labels(holdout, train).persist(StorageLevel.MEMORY_AND_DISK)
        users = labels.select("user").join(ix.consumed(train), "user").persist(StorageLevel.MEMORY_AND_DISK)
        baseline = popularity_recs(users, popular, settings.k, settings.item_block_size).persist(
            StorageLevel.MEMORY_AND_DISK)
        return cls(labels, users, baseline, catalog)

    def release(self) -> None:
        for frame in (self.labels, self.users, self.baseline):
            frame.unpersist()


def evaluate(model: ALSModel | None, judging: Judging, settings: AlsSettings) -> dict[str, Any]:
    """Ranking metrics of a model (None: the popularity baseline) on the holdout users."""
    recs = judging.baseline
    if model is not None:
        recs = with_fallback(model_recs(model, judging.users, settings.k, settings.item_block_size), recs)
    return ranking_metrics(recs, judging.labels, settings.k, judging.catalog)


def judge_champion(lake: Lake, window: DataWindow, judging: Judging,
                   settings: AlsSettings) -> dict[str, Any] | None:
    """The champion's metrics on tonight's holdout, or why it cannot be judged on it."""
    current = registry.champion(lake)
    if current is None:
        return None
    found = registry.manifest(lake, current["version"])
    if found is None:
        return {"version": current["version"], "not_comparable": "its version manifest is missing"}
    if dt.date.fromisoformat(found["data_window"]["train_end"]) >= window.holdout_start:
        return {"version": current["version"],
                "not_comparable": f"it was trained on data up to {found['data_window']['train_end']}, "
                                  f"inside this holdout (from {window.holdout_start})"}
    model = ALSModel.load(f"{lake.model_version(registry.MODEL, current['version'])}/model")
    return {"version": current["version"], **evaluate(model, judging, settings)}
