"""ALS for implicit feedback: training by Spark MLlib or by the `implicit` library on the driver, the BLAS it
runs on, and a small search.

Both engines give a Spark `ALSModel` (factors as DataFrames), so everything after training (evaluation,
promotion, top-K on the executors, the saved version) is the same code whichever trained it."""

from __future__ import annotations

import dataclasses
import itertools
import logging
import random
import time
import uuid
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
from pyspark.ml.recommendation import ALS, ALSModel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from scipy import sparse

from jobs.als.settings import AlsParams, AlsSettings, params_from

log = logging.getLogger(__name__)
NATIVE_BLAS = "dev.ludovic.netlib.blas.JNIBLAS"


def blas_implementation(spark: SparkSession) -> str:
    """The BLAS class Spark's linear algebra got: JNIBLAS is native (e.g. Debian libopenblas0)."""
    name = str(spark.sparkContext._jvm.dev.ludovic.netlib.blas.BLAS.getInstance().getClass().getName())
    if name != NATIVE_BLAS:
        log.warning("ALS runs on %s, not native BLAS: install libopenblas0 (Debian) for faster training", name)
    else:
        log.info("ALS runs on native BLAS (%s)", name)
    return name


def engine_for(settings: AlsSettings, interactions: int) -> str:
    """`implicit` or `spark` for a training split of `interactions` (user, item) pairs (`training.engine`)."""
    if settings.engine == "spark":
        return "spark"
    try:
        import implicit  # noqa: F401  (the driver's environment; executors never need it)
    except ImportError:
        if settings.engine == "implicit":
            raise
        log.warning("the implicit library is not installed on the driver: training with Spark MLlib")
        return "spark"
    if settings.engine == "auto" and interactions > settings.single_node_max_interactions:
        log.info("%d interactions > single_node_max_interactions %d: training with Spark MLlib", interactions,
                 settings.single_node_max_interactions)
        return "spark"
    return "implicit"


@dataclass
class Trained:
    model: ALSModel
    params: AlsParams
    seconds: float
    engine: str = "spark"

    def release(self) -> None:
        """Drop the factors `train` cached (they are saved with the version; the session lives on)."""
        self.model.userFactors.unpersist()
        self.model.itemFactors.unpersist()


def train(ratings: DataFrame, params: AlsParams, settings: AlsSettings, checkpoint_dir: str,
          engine: str = "spark") -> Trained:
    """ALS on `user, item, confidence` by `engine` (see `engine_for`)."""
    if engine == "implicit":
        return _train_on_driver(ratings, params, settings)
    return _train_spark(ratings, params, settings, checkpoint_dir)


def _train_spark(ratings: DataFrame, params: AlsParams, settings: AlsSettings, checkpoint_dir: str) -> Trained:
    """ALS(implicitPrefs=True), checkpointing every few iterations.

    Without a checkpoint directory Spark ignores `checkpointInterval` and a long run's lineage
    grows until StackOverflowError.
    """
    ratings.sparkSession.sparkContext.setCheckpointDir(checkpoint_dir)
    als = ALS(rank=params.rank, maxIter=params.max_iter, regParam=params.reg_param, alpha=params.alpha,
              implicitPrefs=True, userCol="user", itemCol="item", ratingCol="confidence",
              numUserBlocks=settings.num_blocks, numItemBlocks=settings.num_blocks,
              checkpointInterval=settings.checkpoint_interval, seed=settings.seed, coldStartStrategy="drop")
    started = time.perf_counter()
    model = als.fit(ratings)
    model.userFactors.cache().count()
    model.itemFactors.cache().count()
    return Trained(model, params, time.perf_counter() - started)


def _train_on_driver(ratings: DataFrame, params: AlsParams, settings: AlsSettings) -> Trained:
    """`implicit`'s ALS (conjugate gradient) on the split collected to the driver, as an `ALSModel`.

    Confidence as MLlib defines it, c = 1 + alpha * r, given to `implicit` as the matrix with its own alpha 1
    (it reads the values as c); the regularisation on MLlib's scale (`single_node_regularization`). Users and
    items without interactions get no factors, as in MLlib."""
    from implicit.cpu.als import AlternatingLeastSquares
    from threadpoolctl import threadpool_limits

    started = time.perf_counter()
    table = ratings.select("user", "item", "confidence").toArrow()
    users, items = table["user"].to_numpy(), table["item"].to_numpy()
    confidence = (1.0 + params.alpha * table["confidence"].to_numpy()).astype(np.float32)
    del table
    matrix = sparse.csr_matrix((confidence, (users, items)), shape=(int(users.max()) + 1, int(items.max()) + 1))
    del users, items, confidence
    solver = AlternatingLeastSquares(factors=params.rank, regularization=single_node_regularization(params, matrix),
                                     alpha=1.0,
                                     iterations=params.max_iter, use_cg=True, num_threads=settings.single_node_threads,
                                     random_state=settings.seed, calculate_training_loss=False)
    with threadpool_limits(1, "blas"):  # one BLAS thread per solver thread, as implicit advises
        solver.fit(matrix, show_progress=False)
    spark = ratings.sparkSession
    factors = [_factor_frame(spark, np.flatnonzero(matrix.getnnz(axis=axis)), vectors)
               for axis, vectors in ((1, solver.user_factors), (0, solver.item_factors))]
    java = spark._jvm.org.apache.spark.ml.recommendation.ALSModel(  # MLlib's own constructor (package-private)
        f"ALS_{uuid.uuid4().hex[-12:]}", params.rank, factors[0]._jdf, factors[1]._jdf)
    model = ALSModel(java).setUserCol("user").setItemCol("item").setColdStartStrategy("drop")
    model.userFactors.cache().count()
    model.itemFactors.cache().count()
    return Trained(model, params, time.perf_counter() - started, "implicit")


def single_node_regularization(params: AlsParams, matrix: sparse.csr_matrix) -> float:
    """`reg_param` on MLlib's scale, for `implicit`: MLlib regularises each user by reg_param x its interactions
    and each item by reg_param x its interactions (ALS-WR); `implicit` has one value for both, so it gets
    reg_param x the geometric mean of the average user's and the average item's interaction count. With
    `reg_param` as it is, `implicit` overfits small data (the demo's first model lost to popularity)."""
    pairs, users, items = matrix.nnz, np.count_nonzero(matrix.getnnz(axis=1)), np.count_nonzero(matrix.getnnz(axis=0))
    return float(params.reg_param * pairs / np.sqrt(users * items))


def _factor_frame(spark: SparkSession, ids: np.ndarray, vectors: np.ndarray) -> DataFrame:
    """`id int, features array<float>`: the layout of MLlib's factor DataFrames."""
    rows = np.ascontiguousarray(vectors[ids], dtype=np.float32)
    features = pa.FixedSizeListArray.from_arrays(pa.array(rows.ravel()), rows.shape[1]).cast(pa.list_(pa.float32()))
    return spark.createDataFrame(pa.table({"id": pa.array(ids.astype(np.int32)), "features": features}),
                                 "id int, features array<float>")


def non_finite_factors(model: ALSModel) -> int:
    """Users plus items whose factor vector holds NaN or infinity (a diverged fit)."""
    bad = F.exists("features", lambda x: F.isnan(x) | (F.abs(x) == float("inf")))
    return model.userFactors.where(bad).count() + model.itemFactors.where(bad).count()


def search_space(settings: AlsSettings) -> list[AlsParams]:
    """Up to `max_trials` grid points (seeded draw), the configured params first."""
    names = sorted(settings.search_grid)
    grid = [params_from({**dataclasses.asdict(settings.params), **dict(zip(names, values, strict=True))})
            for values in itertools.product(*(settings.search_grid[n] for n in names))]
    others = [p for p in grid if p != settings.params]
    random.Random(settings.seed).shuffle(others)
    return [settings.params, *others][: settings.search_max_trials]
