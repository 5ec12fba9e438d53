"""SparkSession and Hadoop-filesystem helpers shared by the Spark jobs.

File operations go through Hadoop's FileSystem API (the one Spark writes with), so the same
code handles `file://` and `s3a://`. Only driver-side metadata work happens here.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from typing import Any

from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import StringType, StructField, StructType

from jobs.common import catalog, config, settings
from jobs.common.errors import MissingInput, PipelineError
from jobs.common.paths import Lake

log = logging.getLogger(__name__)


def get_spark(app_name: str) -> SparkSession:
    """The job's session; master and resources come from spark-submit, not from code.

    The SQL settings of `pipeline.yaml`'s `spark_conf` (time zone, shuffle partitions, adaptive coalescing) also
    apply when a job is started by a plain `spark-submit jobs/<job>.py` without them, so a run by hand computes
    and performs as the DAG's run; a value given with `--conf` (or by an enclosing session) wins."""
    spark = (SparkSession.builder.appName(app_name).config("spark.sql.session.timeZone", "UTC")
             .config("spark.sql.extensions", catalog.EXTENSIONS).getOrCreate())
    try:
        spark._jvm.java.lang.Class.forName("org.apache.iceberg.spark.SparkCatalog", False,
                                           spark._jvm.Thread.currentThread().getContextClassLoader())
    except Exception as exc:  # py4j: the class is not on the driver's class path
        raise PipelineError(f"the Iceberg jars are not on Spark's class path: submit with the pinned jars, "
                            f"`spark-submit $(python -m jobs.common.catalog) ...` (scripts/pipeline.sh and the "
                            f"Airflow operator do), after `make setup` has fetched them into {config.jars_dir()}"
                            ) from exc
    given = spark.sparkContext.getConf()
    for key, value in settings.pipeline().spark_conf.items():
        if key.startswith("spark.sql.") and not given.contains(key) and spark.conf.isModifiable(key):
            spark.conf.set(key, value)
    spark.sparkContext.setLogLevel("WARN")
    return spark


class Persisted:
    """The frames a run persists, released together at its end: a long-lived session (a backfill in one
    spark-submit, the test suite) must not keep every run's cached frames until the driver runs out of heap."""

    def __init__(self) -> None:
        self._frames: list[DataFrame] = []

    def keep(self, frame: DataFrame) -> DataFrame:
        self._frames.append(frame.persist(StorageLevel.MEMORY_AND_DISK))
        return frame

    def release(self) -> None:
        for frame in self._frames:
            frame.unpersist()
        self._frames.clear()


def load_schema(name: str) -> StructType:
    """A schema kept in `include/schemas/<name>.json` (Spark's StructType JSON)."""
    with open(config.include_path("schemas", f"{name}.json"), encoding="utf-8") as fh:
        return StructType.fromJson(json.load(fh))


def read_raw(spark: SparkSession, dirs: list[str]) -> DataFrame:
    """Raw landing files (one Kafka record per JSON line); a broken line lands in `_corrupt_envelope`."""
    schema = StructType([*load_schema("raw_envelope").fields, StructField("_corrupt_envelope", StringType())])
    reader = spark.read.schema(schema).option("mode", "PERMISSIVE").option(
        "columnNameOfCorruptRecord", "_corrupt_envelope").option("recursiveFileLookup", "true")
    return reader.json(dirs).withColumn("source_file", F.col("_metadata.file_path"))


class LakeFS:
    """Hadoop FileSystem operations on lake URIs."""

    def __init__(self, spark: SparkSession) -> None:
        self._jvm = spark.sparkContext._jvm
        self._conf = spark.sparkContext._jsc.hadoopConfiguration()

    def _path(self, uri: str) -> tuple[Any, Any]:
        path = self._jvm.org.apache.hadoop.fs.Path(uri)
        return path.getFileSystem(self._conf), path

    def exists(self, uri: str) -> bool:
        fs, path = self._path(uri)
        return bool(fs.exists(path))

    def delete(self, uri: str) -> None:
        fs, path = self._path(uri)
        fs.delete(path, True)

    def list_dirs(self, uri: str) -> list[str]:
        fs, path = self._path(uri)
        if not fs.exists(path):
            return []
        return sorted(str(s.getPath().toString()) for s in fs.listStatus(path) if s.isDirectory())

    def partition_dates(self, table: str) -> set[dt.date]:
        """The days a `dt=`-partitioned table has a directory for (none when the table does not exist)."""
        names = (d.rstrip("/").rsplit("/", 1)[-1] for d in self.list_dirs(table))
        return {dt.date.fromisoformat(n.removeprefix("dt=")) for n in names if n.startswith("dt=")}

    def manifests_before(self, lake: Lake, layer: str, table: str, day: dt.date, days: int) -> list[dict[str, Any]]:
        """The published manifests of the `days` partitions before `day`, newest first, skipping days with none:
        the history a row-count gate compares a day with."""
        texts = [self.read_text(Lake.manifest(lake.partition(layer, table, day - dt.timedelta(days=n))))
                 for n in range(1, days + 1)]
        return [json.loads(t) for t in texts if t]

    def file_sizes(self, uri: str) -> dict[str, int]:
        """Every file below `uri` (recursive) with its size in bytes."""
        fs, path = self._path(uri)
        it = fs.listFiles(path, True)
        sizes = {}
        while it.hasNext():
            status = it.next()
            sizes[str(status.getPath().toString())] = int(status.getLen())
        return sizes

    def read_text(self, uri: str) -> str | None:
        fs, path = self._path(uri)
        if not fs.exists(path):
            return None
        stream = fs.open(path)
        try:
            return self._jvm.org.apache.commons.io.IOUtils.toString(stream, "UTF-8")
        finally:
            stream.close()

    def copy_from_local(self, local_dir: str, uri: str) -> None:
        fs, path = self._path(uri)
        fs.delete(path, True)
        fs.copyFromLocalFile(False, True, self._jvm.org.apache.hadoop.fs.Path(local_dir), path)


def read_clickstream(spark: SparkSession, lake: Lake, first: dt.date, last: dt.date) -> tuple[DataFrame, list[str]]:
    """The validated clickstream for [first, last] (partition pruning on dt) and the missing days."""
    table = lake.table("bronze", "clickstream")
    present = LakeFS(spark).partition_dates(table)
    wanted = [first + dt.timedelta(days=n) for n in range((last - first).days + 1)]
    missing = [d.isoformat() for d in wanted if d not in present]
    if not present & set(wanted):
        raise MissingInput(f"no bronze clickstream partitions between {first} and {last} under {table}")
    events = spark.read.option("basePath", table).parquet(
        *[lake.partition("bronze", "clickstream", d) for d in wanted if d in present])
    return events, missing
