"""Ranking quality on the time-based holdout, with Spark ML's RankingEvaluator.

Binary relevance: an item is relevant to a user when they interacted with it in the holdout
and not in training. precision@K, recall@K, NDCG@K and MAP@K are Spark's definitions
(MAP@K divides by min(K, relevant items)); catalog coverage is the share of the training
catalog that appears in anyone's top K.
"""

from __future__ import annotations

from typing import Any

from pyspark.ml.evaluation import RankingEvaluator
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

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
