"""Spark MLlib ALS for implicit feedback: training, the BLAS it runs on, and a small search."""

from __future__ import annotations

import dataclasses
import itertools
import logging
import random
import time
from dataclasses import dataclass

from pyspark.ml.recommendation import ALS, ALSModel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

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


@dataclass
class Trained:
    model: ALSModel
    params: AlsParams
    seconds: float

    def release(self) -> None:
        """Drop the factors `train` cached (they are saved with the version; the session lives on)."""
        self.model.userFactors.unpersist()
        self.model.itemFactors.unpersist()


def train(ratings: DataFrame, params: AlsParams, settings: AlsSettings, checkpoint_dir: str) -> Trained:
    """ALS(implicitPrefs=True) on `user, item, confidence`, checkpointing every few iterations.

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
