"""This project's ALS training (its Spark MLlib engine and its `implicit` engine on the driver) against the
`implicit` library's CPU ALS called directly.

Same interaction matrix, same time-based holdout, same factors / regularisation value /
iterations / confidence (c = 1 + alpha * r; implicit is given 1 + alpha * r with its own
alpha = 1, since it uses the matrix values as c directly), both on the 2 cores here, native
BLAS single-threaded as Spark's docs advise. Timed per iteration as the marginal cost,
(fit(N) - fit(1)) / (N - 1), so start-up is not counted; the full fit time is printed too.
implicit runs twice: its default conjugate-gradient solver (3 CG steps, approximate) and the
exact Cholesky solve that Spark also does. Ranking quality for all of them comes from the
same Spark RankingEvaluator on the same holdout (jobs/als/evaluation.py).

One semantic difference stays: Spark scales regParam by each user's/item's interaction count
(ALS-WR), implicit does not, so "the same lambda" regularises differently.

Datasets: generated clickstream (the demo generator's users with genre tastes, run through the
project's interaction code: event weights, decay, stable ids; the last day is the holdout) and
MovieLens ratings (`--movielens DIR` with ratings.csv; rating = weight; the last 10% of the
timeline is the holdout).

    python benchmarks/als_vs_implicit.py [--movielens ../shared/data/movielens-small] [--users 120000]
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before numpy/implicit load OpenBLAS

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import datetime as dt  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from implicit.cpu.als import AlternatingLeastSquares  # noqa: E402
from pyspark.sql import DataFrame, SparkSession  # noqa: E402
from pyspark.sql import functions as F  # noqa: E402
from scipy import sparse  # noqa: E402

from demo import clickstream as demo_clickstream  # noqa: E402
from demo import settings as demo_settings  # noqa: E402
from jobs.als import interactions as ix  # noqa: E402
from jobs.als.evaluation import ranking_metrics  # noqa: E402
from jobs.als.model import blas_implementation, train  # noqa: E402
from jobs.als.settings import AlsParams  # noqa: E402
from jobs.als.settings import load as load_settings  # noqa: E402
from jobs.als.topk import model_recs  # noqa: E402

LAST_DAY = dt.date(2026, 11, 20)


def generated(spark: SparkSession, users: int, items: int, events_per_day: int, days: int) -> tuple[DataFrame, ...]:
    """Demo-generator clickstream through the project's interaction code; the last day is the holdout."""
    settings = load_settings()
    population = demo_clickstream.Population(demo_clickstream.Scale(events_per_day, users, items, days), 42,
                                             demo_settings.load())
    frames = []
    for n in range(days):
        day = LAST_DAY - dt.timedelta(days=days - 1 - n)
        frame, event_ms, _ = demo_clickstream.day_frame(population, day, events_per_day,
                                                      np.random.default_rng([42, day.toordinal()]))
        frames.append(pd.DataFrame({"user_id": frame["user_id"], "item_id": frame["item_id"],
                                    "event_type": frame["event_type"],
                                    "event_ts": pd.to_datetime(event_ms, unit="ms")}))
    events = spark.createDataFrame(pd.concat(frames, ignore_index=True))
    cutoff = dt.datetime.combine(LAST_DAY, dt.time())
    rows = ix.from_events(events, settings.event_weights).withColumn("holdout", F.col("event_ts") >= F.lit(cutoff))
    return split(ix.decayed(rows, cutoff, settings.half_life_days), LAST_DAY)


def movielens(spark: SparkSession, directory: str) -> tuple[DataFrame, ...]:
    """MovieLens ratings as an interaction export (weight = rating, no decay).

    The ratings span 22 years and most users rate within days, so one global cut leaves almost
    nobody on both sides; the holdout is each user's last 20% of the timeline instead.
    """
    ratings = pd.read_csv(Path(directory) / "ratings.csv")
    cut = ratings.groupby("userId")["timestamp"].transform(lambda t: t.quantile(0.8))
    rows = spark.createDataFrame(pd.DataFrame({
        "user_id": ratings["userId"].astype(str), "item_id": ratings["movieId"].astype(str),
        "weight": ratings["rating"].astype(float), "event_ts": pd.to_datetime(ratings["timestamp"], unit="s"),
        "holdout": ratings["timestamp"] > cut}))
    return split(rows, LAST_DAY)


def split(rows: DataFrame, day: dt.date) -> tuple[DataFrame, ...]:
    """(train `user, item, confidence`, holdout labels, train users' consumed items) with dense ids.

    `rows`: user_id, item_id, weight (decayed already), holdout (bool).
    """
    empty = rows.sparkSession.createDataFrame([], ix.MAP_SCHEMA)
    users, _ = ix.assign_ids(rows.select(F.col("user_id").alias("key")), empty, 2**31 - 1, day)
    items, _ = ix.assign_ids(rows.select(F.col("item_id").alias("key")), empty, 2**31 - 1, day)
    tagged = ix.with_ids(rows, users, items)
    train_set = (ix.confidences(tagged.where(~F.col("holdout")))
                 .select("user", "item", F.col("confidence").cast("float")).cache())
    holdout = tagged.where(F.col("holdout")).select("user", "item").distinct()
    labels = ix.holdout_labels(holdout, train_set).cache()
    consumed = ix.consumed(train_set).cache()
    print(f"  train: {train_set.count():,} interactions, {train_set.select('user').distinct().count():,} users, "
          f"{train_set.select('item').distinct().count():,} items; holdout users: {labels.count():,}")
    return train_set, labels, consumed


def project_als(train_set: DataFrame, labels: DataFrame, consumed: DataFrame, params: AlsParams, k: int,
                checkpoint_dir: str, num_blocks: int | None, engine: str) -> dict:
    """This project's training function with `engine` (spark: MLlib; implicit: the driver engine, including
    collecting the split and handing the factors back to Spark, which its "fit s" counts)."""
    settings = load_settings()
    if num_blocks:
        settings = dataclasses.replace(settings, num_blocks=num_blocks)
    one = train(train_set, AlsParams(params.rank, params.reg_param, params.alpha, 1), settings, checkpoint_dir,
                engine)
    one.release()
    full = train(train_set, params, settings, checkpoint_dir, engine)
    recs = model_recs(full.model, labels.select("user").join(consumed, "user"), k, settings.item_block_size)
    catalog = train_set.select("item").distinct().count()
    return {"fit": full.seconds, "per_iteration": (full.seconds - one.seconds) / (params.max_iter - 1),
            **ranking_metrics(recs, labels, k, catalog)}


def implicit_als(train_set: DataFrame, labels: DataFrame, params: AlsParams, k: int, use_cg: bool) -> dict:
    spark = train_set.sparkSession
    frame = train_set.toPandas()
    shape = (int(frame["user"].max()) + 1, int(frame["item"].max()) + 1)
    confidence = (1.0 + params.alpha * frame["confidence"].to_numpy()).astype(np.float32)
    matrix = sparse.csr_matrix((confidence, (frame["user"], frame["item"])), shape=shape)

    def fit(iterations: int) -> tuple[AlternatingLeastSquares, float]:
        model = AlternatingLeastSquares(factors=params.rank, regularization=params.reg_param, alpha=1.0,
                                        iterations=iterations, use_cg=use_cg, num_threads=2, random_state=42,
                                        calculate_training_loss=False)
        started = time.perf_counter()
        model.fit(matrix, show_progress=False)
        return model, time.perf_counter() - started

    _, one = fit(1)
    model, full = fit(params.max_iter)
    users = np.array(sorted(r["user"] for r in labels.select("user").collect()), dtype=np.int32)
    ids, _ = model.recommend(users, matrix[users], N=k, filter_already_liked_items=True)
    recs = spark.createDataFrame(pd.DataFrame({
        "user": np.repeat(users, ids.shape[1]), "rank": np.tile(np.arange(1, ids.shape[1] + 1), len(users)),
        "item": ids.ravel()}).query("item >= 0").astype("int32"))
    catalog = int((matrix.getnnz(axis=0) > 0).sum())
    return {"fit": full, "per_iteration": (full - one) / (params.max_iter - 1),
            **ranking_metrics(recs, labels, k, catalog)}


def report(name: str, results: dict[str, dict], k: int) -> None:
    spark_result = results["Spark MLlib ALS"]
    print(f"\n{name}")
    print(f"  {'engine':<34}{'s/iteration':>12}{'fit s':>8}{'ratio':>8}{f'NDCG@{k}':>10}{f'P@{k}':>8}"
          f"{'dNDCG':>9}{'users':>8}")
    for engine, r in results.items():
        ratio = spark_result["per_iteration"] / r["per_iteration"]
        print(f"  {engine:<34}{r['per_iteration']:>12.3f}{r['fit']:>8.1f}{ratio:>7.2f}x{r['ndcg_at_k']:>10.4f}"
              f"{r['precision_at_k']:>8.4f}{spark_result['ndcg_at_k'] - r['ndcg_at_k']:>+9.4f}"
              f"{r['users_evaluated']:>8}")
    print("  ratio = Spark seconds per iteration / engine seconds per iteration; dNDCG = Spark - engine")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--movielens", help="directory with MovieLens ratings.csv (kept out of the repo)")
    parser.add_argument("--users", type=int, default=120_000)
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--events-per-day", type=int, default=400_000)
    parser.add_argument("--days", type=int, default=10)
    parser.add_argument("--rank", type=int, default=32)
    parser.add_argument("--reg-param", type=float, default=0.1)
    parser.add_argument("--alpha", type=float, default=10.0)
    parser.add_argument("--iterations", type=int, default=10)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--num-blocks", type=int, help="Spark ALS user/item blocks (default: include/als.yaml)")
    parser.add_argument("--skip-generated", action="store_true", help="only the MovieLens dataset")
    args = parser.parse_args()
    spark = (SparkSession.builder.master("local[2]").config("spark.driver.memory", "12g")
             .config("spark.sql.shuffle.partitions", "8").config("spark.ui.enabled", "false")
             .config("spark.sql.session.timeZone", "UTC").config("spark.ui.showConsoleProgress", "false").getOrCreate())
    spark.sparkContext.setLogLevel("ERROR")
    params = AlsParams(args.rank, args.reg_param, args.alpha, args.iterations)
    print(f"ALS benchmark: rank {params.rank}, regularisation {params.reg_param}, alpha {params.alpha}, "
          f"{params.max_iter} iterations, 2 cores; Spark BLAS: {blas_implementation(spark)}")
    datasets = {} if args.skip_generated else {
        "generated clickstream": lambda: generated(spark, args.users, args.items, args.events_per_day, args.days)}
    if args.movielens:
        datasets["MovieLens (" + Path(args.movielens).name + ")"] = lambda: movielens(spark, args.movielens)
    with tempfile.TemporaryDirectory() as scratch:
        for name, build in datasets.items():
            print(f"\n== {name}")
            train_set, labels, consumed = build()
            checkpoints = Path(scratch, "checkpoints").as_uri()
            results = {"Spark MLlib ALS": project_als(train_set, labels, consumed, params, args.k, checkpoints,
                                                      args.num_blocks, "spark"),
                       "this job, engine implicit": project_als(train_set, labels, consumed, params, args.k,
                                                                checkpoints, args.num_blocks, "implicit"),
                       "implicit ALS (conjugate gradient)": implicit_als(train_set, labels, params, args.k, True),
                       "implicit ALS (exact Cholesky)": implicit_als(train_set, labels, params, args.k, False)}
            report(name, results, args.k)
    spark.stop()


if __name__ == "__main__":
    main()
