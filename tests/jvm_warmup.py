"""A short Spark run touching what the jobs use (JSON, Parquet, shuffles, windows, joins, persist), run once by
tests/conftest.py with -XX:ArchiveClassesAtExit: the classes it loads become the tests' class-data archive."""

import sys
import tempfile

from pyspark.sql import SparkSession, Window
from pyspark.sql import functions as F

spark = SparkSession.builder.appName("jvm-warmup").config("spark.sql.shuffle.partitions", "4").getOrCreate()
with tempfile.TemporaryDirectory() as tmp:
    raw = spark.read.json(spark.sparkContext.parallelize(['{"k": "a", "v": 1, "t": "2026-11-20T10:00:00Z"}'] * 50))
    rows = raw.withColumn("ts", F.to_timestamp("t")).withColumn(
        "n", F.row_number().over(Window.partitionBy("k").orderBy("ts"))).persist()
    rows.groupBy("k").agg(F.sum("v"), F.max("ts")).join(rows, "k").write.parquet(f"{tmp}/out")
    spark.read.parquet(f"{tmp}/out").collect()
    rows.unpersist()
spark.stop()
sys.exit(0)
