"""CDC merge throughput, and how it grows with the size of the table it merges into.

Builds a silver table (history and current, one version per key) of `--rows` rows and of 10x
that, then merges the same day of changes into each: `--changes` updates (default 1 million)
spread over `--keys` keys (default 100,000), all after the table's last position. Times
`jobs.cdc.scd2.merge` plus writing both staged tables, which is what `cdc_merge` does per table
(GX validation and the publish rename are left out: the first is timed by the job's own report,
the second is a metadata operation). Prints changes/s per size and the 10x/1x time ratio: 1.0
would mean the cost follows the day's changes only, 10 that it follows the table's size.

The peer, in the same run on the same Parquet files: DuckDB doing the same SCD2 merge in SQL
(touched keys' history back to events, union with the changes, de-duplicate by key, position
and op, versions by `lead` over the key's events in position order, untouched rows copied),
writing the same two tables.

    python benchmarks/cdc_merge_scale.py [--rows 1000000] [--changes 1000000] [--keys 100000]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from pathlib import Path

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from jobs.cdc import scd2 as merge
from jobs.cdc import settings
from jobs.cdc.merge import write_table

TABLE = settings.parse({"tables": {"accounts": {"source": "public.accounts", "primary_key": ["id"], "columns": {
    "id": "bigint", "plan": "string", "price": "decimal(10,2)", "changed_at": "timestamp"}}}}).table("accounts")


def plan(n: Column) -> Column:
    return F.array(*[F.lit(p) for p in ("basic", "standard", "premium")])[n % 3]


def existing_table(spark: SparkSession, rows: int, directory: str) -> merge.Silver:
    """`rows` live keys, one version each, opened by a snapshot read at position 1000."""
    data = spark.range(rows).select(
        F.col("id"), plan(F.col("id")).alias("plan"), (F.col("id") % 2000 / 100).cast("decimal(10,2)").alias(
            "price"), F.timestamp_seconds(F.lit(1_700_000_000) + F.col("id") % 86400).alias("changed_at"))
    history = data.select(
        "*", F.to_json(F.array("id")).alias("_key"), F.col("changed_at").alias("valid_from"),
        F.lit(None).cast("timestamp").alias("valid_to"), F.lit(True).alias("is_current"), F.lit("r").alias("opened_by"),
        F.lit(None).cast("string").alias("closed_by"), F.array(F.lit(1000).cast("bigint")).alias("_pos_from"),
        F.lit(None).cast("array<bigint>").alias("_pos_to"), F.lit(None).cast("string").alias("_tx_id"),
        F.array().cast("array<string>").alias("_flags"))
    history.write.mode("overwrite").parquet(f"{directory}/history")
    history = spark.read.parquet(f"{directory}/history")
    merge.current_of(history).write.mode("overwrite").parquet(f"{directory}/current")
    return merge.Silver(history, spark.read.parquet(f"{directory}/current"), [1000])


def changes_of(spark: SparkSession, changes: int, keys: int) -> DataFrame:
    """`changes` updates over the first `keys` keys, in the bronze change-log shape, positions after 1000."""
    n = F.col("id")
    key = n % keys
    after = F.to_json(F.struct(key.alias("id"), plan(n).alias("plan"),
                               F.format_number(n % 5000 / 100, 2).alias("price"),
                               F.date_format(F.timestamp_seconds(F.lit(1_800_000_000) + n),
                                             "yyyy-MM-dd'T'HH:mm:ss.SSSSSSXXX").alias("changed_at")))
    return spark.range(changes).select(
        F.lit("accounts").alias("table"), F.lit("u").alias("op"), F.to_json(F.array(key)).alias("key"),
        F.array((F.lit(2000) + n).cast("bigint")).alias("pos"), F.timestamp_seconds(F.lit(1_800_000_000) + n).alias(
            "source_ts"), F.floor(n / 3).cast("string").alias("tx_id"), F.lit("false").alias("snapshot"),
        F.lit("postgresql").alias("connector"), F.lit(None).cast("string").alias("before"), after.alias("after"),
        F.lit(None).cast("string").alias("column_types"))


def timed_merge(spark: SparkSession, silver: merge.Silver, changes: DataFrame, directory: str) -> dict:
    started = time.perf_counter()
    merged = merge.merge(TABLE, silver, changes)
    history = write_table(merged.history, f"{directory}/history")  # as cdc_merge writes the staged tables
    current = write_table(merged.current, f"{directory}/current")
    seconds = time.perf_counter() - started
    return {"seconds": round(seconds, 1), "history_rows": history.count(), "current_rows": current.count()}


DUCKDB_MERGE = """
CREATE TEMP TABLE touched AS SELECT DISTINCT key AS _key FROM read_parquet('{changes}/*.parquet');
CREATE TEMP TABLE events AS
SELECT _key, opened_by AS op, _pos_from AS pos, valid_from AS ts, _tx_id AS tx_id, id, plan, price, changed_at,
       0 AS origin
FROM read_parquet('{base}/history/*.parquet') SEMI JOIN touched USING (_key)
UNION ALL
SELECT key, op, pos, source_ts, tx_id, CAST(after->>'id' AS BIGINT), after->>'plan',
       CAST(after->>'price' AS DECIMAL(10,2)), CAST(after->>'changed_at' AS TIMESTAMP), 2
FROM read_parquet('{changes}/*.parquet');
CREATE TEMP TABLE versions AS
SELECT id, plan, price, changed_at, _key, ts AS valid_from, lead(ts) OVER w AS valid_to,
       lead(op) OVER w IS NULL AS is_current, op AS opened_by, lead(op) OVER w AS closed_by, pos AS _pos_from,
       lead(pos) OVER w AS _pos_to, tx_id AS _tx_id, []::VARCHAR[] AS _flags
FROM (SELECT * FROM events QUALIFY row_number() OVER (PARTITION BY _key, pos, op ORDER BY origin) = 1)
WINDOW w AS (PARTITION BY _key ORDER BY pos);
COPY (SELECT * FROM read_parquet('{base}/history/*.parquet') ANTI JOIN touched USING (_key)
      UNION ALL BY NAME SELECT * FROM versions) TO '{out}/history' (FORMAT parquet, PER_THREAD_OUTPUT true);
COPY (SELECT * FROM read_parquet('{base}/current/*.parquet') ANTI JOIN touched USING (_key)
      UNION ALL BY NAME SELECT * EXCLUDE (valid_to, is_current, closed_by, _pos_to) FROM versions WHERE is_current)
  TO '{out}/current' (FORMAT parquet, PER_THREAD_OUTPUT true);
"""


def duckdb_merge(base: str, changes: str, out: str) -> dict:
    """The same merge in DuckDB SQL on the same Parquet files (the peer)."""
    import duckdb

    connection = duckdb.connect()
    Path(out).mkdir(parents=True)
    started = time.perf_counter()
    connection.execute(DUCKDB_MERGE.format(base=base, changes=changes, out=out))
    seconds = time.perf_counter() - started
    count = connection.execute(f"SELECT (SELECT count(*) FROM read_parquet('{out}/history/*.parquet')), "
                               f"(SELECT count(*) FROM read_parquet('{out}/current/*.parquet'))").fetchone()
    return {"seconds": round(seconds, 1), "history_rows": count[0], "current_rows": count[1]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000, help="existing table size (then 10x that)")
    parser.add_argument("--changes", type=int, default=1_000_000)
    parser.add_argument("--keys", type=int, default=100_000)
    parser.add_argument("--work-dir", default="benchmarks/out/cdc_merge")
    parser.add_argument("--driver-memory", default="8g")
    args = parser.parse_args()
    work = Path(args.work_dir).resolve()
    shutil.rmtree(work, ignore_errors=True)
    os.environ["PYSPARK_SUBMIT_ARGS"] = f"--driver-memory {args.driver_memory} pyspark-shell"
    spark = (SparkSession.builder.master("local[*]").appName("cdc-merge-bench")
             .config("spark.sql.session.timeZone", "UTC").config("spark.sql.shuffle.partitions", "16")
             .config("spark.ui.showConsoleProgress", "false").getOrCreate())
    spark.sparkContext.setLogLevel("ERROR")
    changes_dir = f"{work}/changes"
    changes_of(spark, args.changes, args.keys).write.parquet(changes_dir)
    changes = spark.read.parquet(changes_dir)
    timed_merge(spark, existing_table(spark, 1000, f"{work}/warm_base"), changes.limit(1000), f"{work}/warm")
    results = {}  # the JVM is warm now: the first timed size does not pay for JIT and class loading
    for rows in (args.rows, 10 * args.rows):
        silver = existing_table(spark, rows, f"{work}/base_{rows}")
        result = timed_merge(spark, silver, changes, f"{work}/merged_{rows}")
        expected_versions = rows + args.changes
        assert result["history_rows"] == expected_versions and result["current_rows"] == rows, result
        peer = duckdb_merge(f"{work}/base_{rows}", changes_dir, f"{work}/duckdb_{rows}")
        assert (peer["history_rows"], peer["current_rows"]) == (expected_versions, rows), peer
        for engine, timing in (("spark", result), ("duckdb", peer)):
            timing["changes_per_second"] = round(args.changes / timing["seconds"])
            print(f"{engine:>6} {rows:>11,} rows: {args.changes:,} changes over {args.keys:,} keys merged in "
                  f"{timing['seconds']} s ({timing['changes_per_second']:,} changes/s)")
        results[rows] = {"spark": result, "duckdb": peer, "spark_over_duckdb": round(result["seconds"] /
                                                                                     peer["seconds"], 2)}
    ratios = {engine: round(results[10 * args.rows][engine]["seconds"] / results[args.rows][engine]["seconds"], 2)
              for engine in ("spark", "duckdb")}
    print(f"10x the table, same changes: Spark {ratios['spark']}x the time, DuckDB {ratios['duckdb']}x "
          f"(1.0 = the cost follows the changes; 10 = it follows the table)")
    print(json.dumps({"rows": args.rows, "changes": args.changes, "keys": args.keys, "cores": os.cpu_count(),
                      "results": {str(k): v for k, v in results.items()}, "growth_10x": ratios}))
    spark.stop()
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
