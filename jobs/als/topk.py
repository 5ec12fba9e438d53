"""Blockwise top-K by dot product, with per-query exclusions: recommendations and similar items.

`recommendForAllUsers` cannot leave out what a user already consumed and scores whole blocks
of users x items at once; here the item factors are broadcast once and each Arrow batch of
queries is scored against `block` items at a time (numpy matrix products, native BLAS), keeping
a running top-K. Memory per task is bounded by batch rows x block floats, whatever the catalog.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from pyspark.ml.recommendation import ALSModel
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

OUTPUT_SCHEMA = "query int, rank int, item int, score float"


def top_k(queries: np.ndarray, items: np.ndarray, item_ids: np.ndarray, exclude: list[np.ndarray], k: int,
          block: int) -> tuple[np.ndarray, np.ndarray]:
    """(ids, scores), each `len(queries) x min(k, items)`, best first, equal scores by item id.

    Which of several items tied exactly at the K-th place is kept is unspecified (argpartition).
    `item_ids` must be sorted ascending. Excluded items never appear; a query with fewer than
    k allowed items gets -inf scores (and id -1) in its unused slots.
    """
    n, width = len(queries), min(k, len(item_ids))
    best_ids = np.full((n, width), -1, dtype=np.int64)
    best = np.full((n, width), -np.inf, dtype=np.float32)
    if n == 0 or width == 0:
        return best_ids, best
    lengths = np.array([len(e) for e in exclude], dtype=np.int64)
    flat = np.concatenate(exclude).astype(np.int64) if lengths.sum() else np.empty(0, np.int64)
    rows = np.repeat(np.arange(n), lengths)
    cols = np.searchsorted(item_ids, flat)
    known = cols < len(item_ids)
    known[known] = item_ids[cols[known]] == flat[known]
    rows, cols = rows[known], cols[known]
    for start in range(0, len(item_ids), block):
        stop = min(start + block, len(item_ids))
        scores = queries @ items[start:stop].T
        inside = (cols >= start) & (cols < stop)
        scores[rows[inside], cols[inside] - start] = -np.inf
        ids = np.broadcast_to(item_ids[start:stop], scores.shape)
        if stop - start > width:
            keep = np.argpartition(-scores, width - 1, axis=1)[:, :width]
            scores, ids = np.take_along_axis(scores, keep, 1), np.take_along_axis(ids, keep, 1)
        merged_scores, merged_ids = np.hstack([best, scores]), np.hstack([best_ids, ids])
        order = np.lexsort((merged_ids, -merged_scores), axis=-1)[:, :width]
        best, best_ids = np.take_along_axis(merged_scores, order, 1), np.take_along_axis(merged_ids, order, 1)
    best_ids[np.isneginf(best)] = -1
    return best_ids, best


def factor_matrix(factors: pd.DataFrame, normalise: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(sorted ids, float32 matrix) from an `id, features` frame; unit rows for cosine."""
    factors = factors.sort_values("id")
    matrix = np.stack(factors["features"].to_numpy()).astype(np.float32) if len(factors) else np.empty((0, 0),
                                                                                                       np.float32)
    if normalise and len(matrix):
        norms = np.linalg.norm(matrix, axis=1, keepdims=True)
        matrix = np.divide(matrix, norms, out=np.zeros_like(matrix), where=norms > 0)
    return factors["id"].to_numpy(np.int64), matrix


def recommend(queries: DataFrame, items: DataFrame, k: int, block: int, cosine: bool = False) -> DataFrame:
    """Top-K items per query row in long form (`query, rank, item, score`; rank 1 = best).

    `queries`: `id int, features array<float>, exclude array<int>`; `items`: `id int,
    features array<float>` (collected to the driver and broadcast: items x rank floats).
    """
    item_ids, matrix = factor_matrix(items.select("id", "features").toPandas(), normalise=cosine)
    shared = queries.sparkSession.sparkContext.broadcast((item_ids, matrix))

    def score(batches):  # runs on the executors, one Arrow batch of queries at a time
        ids, factors = shared.value
        for batch in batches:
            query_ids, query_matrix = factor_matrix(batch[["id", "features"]], normalise=cosine)
            exclude = batch.set_index("id").loc[query_ids, "exclude"]
            found, scores = top_k(query_matrix, factors, ids,
                                  [np.asarray(e if e is not None else [], np.int64) for e in exclude], k, block)
            rank = np.broadcast_to(np.arange(1, found.shape[1] + 1), found.shape)
            keep = found >= 0
            yield pd.DataFrame({"query": np.repeat(query_ids, found.shape[1])[keep.ravel()].astype(np.int32),
                                "rank": rank[keep].astype(np.int32), "item": found[keep].astype(np.int32),
                                "score": scores[keep].astype(np.float32)})

    if len(item_ids) == 0:
        return queries.sparkSession.createDataFrame([], OUTPUT_SCHEMA)
    return queries.select("id", "features", "exclude").mapInPandas(score, OUTPUT_SCHEMA)


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
