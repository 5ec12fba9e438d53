"""CDC merge cost, and how it grows with the size of the table it merges into.

Builds a silver table (history and current, one version per key, cut into segments of `--segment-rows` as
`cdc_merge` lays it out) for each of `--sizes`, then merges the same day of changes into each: `--changes`
updates (default 1 million) over `--keys` keys (default 100,000), all after the table's last position, in two
spreads:

- `contiguous`: the keys are one range of the table (ids 0..keys-1), as when the recent rows of an OLTP table
  change; the merge rewrites the segments that range falls into and links the others' files;
- `uniform`: the keys are spread evenly over the whole table; every segment changes, so everything is rewritten.

Times `jobs.cdc.merge.stage_table` (read what changed, the SCD2 merge, write and link the staged tables), which
is what `cdc_merge` does per table before its GX gates and the publish swap (the gates are timed by the job's
own report, the swap is a rename). Prints seconds per size and spread and the growth with the table: 1.0 would
mean the cost follows the day's changes only, 10 (for 10x the rows) that it follows the table.

The peer, in the same run on the same Parquet files: DuckDB doing the same SCD2 merge in SQL (touched keys'
history back to events, union with the changes, de-duplicate by key, position and op, versions by `lead` over
the key's events in position order, untouched rows copied), writing the same two tables.

    python benchmarks/cdc_merge_scale.py [--sizes 1000000,10000000] [--changes 1000000] [--keys 100000]
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

from jobs.cdc import layout, merge, settings
from jobs.cdc.scd2 import current_of
from jobs.common import storage
from jobs.common.paths import Lake

TABLE = settings.parse({"tables": {"accounts": {"source": "public.accounts", "primary_key": ["id"], "columns": {
    "id": "bigint", "plan": "string", "price": "decimal(10,2)", "changed_at": "timestamp"}}}}).table("accounts")


def plan(n: Column) -> Column:
    return F.array(*[F.lit(p) for p in ("basic", "standard", "premium")])[n % 3]


def existing_table(spark: SparkSession, rows: int, lake: Lake, segment_rows: int) -> dict:
    """`rows` live keys, one version each, opened by a snapshot read at position 1000, published in segments;
    returns the table's manifest (as `cdc_merge` leaves it)."""
    data = spark.range(rows).select(
        F.col("id"), plan(F.col("id")).alias("plan"), (F.col("id") % 2000 / 100).cast("decimal(10,2)").alias(
            "price"), F.timestamp_seconds(F.lit(1_700_000_000) + F.col("id") % 86400).alias("changed_at"))
    history = data.select(
        "*", F.to_json(F.array("id")).alias("_key"), F.col("changed_at").alias("valid_from"),
        F.lit(None).cast("timestamp").alias("valid_to"), F.lit(True).alias("is_current"), F.lit("r").alias("opened_by"),
        F.lit(None).cast("string").alias("closed_by"), F.array(F.lit(1000).cast("bigint")).alias("_pos_from"),
        F.lit(None).cast("array<bigint>").alias("_pos_to"), F.lit(None).cast("string").alias("_tx_id"),
        F.array().cast("array<string>").alias("_flags"), F.lit(None).cast("bigint").alias("_tx_order"),
        F.lit(None).cast("bigint").alias("_seq"))
    directories = {kind: lake.silver(TABLE.name, kind) for kind in layout.KINDS}
    written = layout.write(history, current_of(history), directories, directories, TABLE,
                           layout.Plan(None), segment_rows, rows, history.select("_key"))
    manifest = {"watermark": [1000], "layout": written.layout.as_dict(),
                "counts": {"history_rows": rows, "current_rows": rows}}
    for directory in directories.values():
        storage.write_atomic(Lake.manifest(directory), json.dumps(manifest).encode())
    return manifest


def changes_of(spark: SparkSession, changes: int, keys: int, stride: int) -> DataFrame:
    """`changes` updates over `keys` keys (id = k * stride), in the bronze change-log shape, positions after 1000."""
    n = F.col("id")
    key = n % keys * stride
    after = F.to_json(F.struct(key.alias("id"), plan(n).alias("plan"),
                               F.format_number(n % 5000 / 100, 2).alias("price"),
                               F.date_format(F.timestamp_seconds(F.lit(1_800_000_000) + n),
                                             "yyyy-MM-dd'T'HH:mm:ss.SSSSSSXXX").alias("changed_at")))
    return spark.range(changes).select(
        F.lit("accounts").alias("table"), F.lit("u").alias("op"), F.to_json(F.array(key)).alias("key"),
        F.array((F.lit(2000) + n).cast("bigint")).alias("pos"), F.timestamp_seconds(F.lit(1_800_000_000) + n).alias(
            "source_ts"), F.floor(n / 3).cast("string").alias("tx_id"), F.lit(None).cast("bigint").alias("tx_order"),
        F.lit("false").alias("snapshot"), F.lit("postgresql").alias("connector"),
        F.lit(None).cast("string").alias("before"), after.alias("after"),
        F.lit(None).cast("string").alias("column_types"), F.lit(None).cast("bigint").alias("kafka_offset"))


def timed_merge(spark: SparkSession, lake: Lake, manifest: dict, changes: DataFrame, out: str,
                segment_rows: int) -> dict:
    staged = {kind: f"{out}/{kind}" for kind in layout.KINDS}
    started = time.perf_counter()
    result = merge.stage_table(spark, lake, TABLE, manifest, changes, None, staged, segment_rows)
    seconds = time.perf_counter() - started
    written = result.written
    return {"seconds": round(seconds, 1), "history_rows": written.layout.rows("history"),
            "current_rows": written.layout.rows("current"), "segments": len(written.layout.segments),
            "rewritten_segments": len(written.rewritten_segments), "linked_files": written.linked_files,
            "full": result.plan.reason if result.plan.full else None}


DUCKDB_MERGE = """
CREATE TEMP TABLE touched AS SELECT DISTINCT key AS _key FROM read_parquet('{changes}/*.parquet');
CREATE TEMP TABLE events AS
SELECT _key, opened_by AS op, _pos_from AS pos, valid_from AS ts, _tx_id AS tx_id, id, plan, price, changed_at,
       0 AS origin
FROM read_parquet('{history}/*.parquet') SEMI JOIN touched USING (_key)
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
COPY (SELECT * FROM read_parquet('{history}/*.parquet') ANTI JOIN touched USING (_key)
      UNION ALL BY NAME SELECT * FROM versions) TO '{out}/history' (FORMAT parquet, PER_THREAD_OUTPUT true);
COPY (SELECT * FROM read_parquet('{current}/*.parquet') ANTI JOIN touched USING (_key)
      UNION ALL BY NAME SELECT * EXCLUDE (valid_to, is_current, closed_by, _pos_to) FROM versions WHERE is_current)
  TO '{out}/current' (FORMAT parquet, PER_THREAD_OUTPUT true);
"""


def duckdb_merge(silver: str, table: str, changes: str, out: str) -> dict:
    """The same merge in DuckDB SQL on the same Parquet files (the peer)."""
    import duckdb

    connection = duckdb.connect()
    Path(out).mkdir(parents=True)
    started = time.perf_counter()
    connection.execute(DUCKDB_MERGE.format(history=f"{silver}/{table}_history", current=f"{silver}/{table}_current",
                                           changes=changes, out=out))
    seconds = time.perf_counter() - started
    count = connection.execute(f"SELECT (SELECT count(*) FROM read_parquet('{out}/history/*.parquet')), "
                               f"(SELECT count(*) FROM read_parquet('{out}/current/*.parquet'))").fetchone()
    return {"seconds": round(seconds, 1), "history_rows": count[0], "current_rows": count[1]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000000,10000000", help="existing table sizes, comma-separated")
    parser.add_argument("--changes", type=int, default=1_000_000)
    parser.add_argument("--keys", type=int, default=100_000)
    parser.add_argument("--segment-rows", type=int, default=settings.DEFAULT_SEGMENT_ROWS)
    parser.add_argument("--work-dir", default="benchmarks/out/cdc_merge")
    parser.add_argument("--driver-memory", default="8g")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    work = Path(args.work_dir).resolve()
    shutil.rmtree(work, ignore_errors=True)
    os.environ["PYSPARK_SUBMIT_ARGS"] = f"--driver-memory {args.driver_memory} pyspark-shell"
    spark = (SparkSession.builder.master("local[*]").appName("cdc-merge-bench")
             .config("spark.sql.session.timeZone", "UTC").config("spark.sql.shuffle.partitions", "16")
             .config("spark.ui.showConsoleProgress", "false").getOrCreate())
    spark.sparkContext.setLogLevel("ERROR")
    warm = Lake((work / "warm").as_uri())
    timed_merge(spark, warm, existing_table(spark, 1000, warm, 100), changes_of(spark, 1000, 100, 1),
                f"{work}/warm/out", 100)
    results: dict[str, dict[int, dict]] = {}  # the JVM is warm now: the first size does not pay for JIT
    for rows in sizes:
        lake = Lake((work / f"base_{rows}").as_uri())
        manifest = existing_table(spark, rows, lake, args.segment_rows)
        base = lake.silver(TABLE.name, "history").rsplit("/", 1)[0].removeprefix("file://")
        for spread, stride in (("contiguous", 1), ("uniform", rows // args.keys)):
            changes_dir = f"{work}/changes_{rows}_{spread}"
            changes_of(spark, args.changes, args.keys, stride).write.parquet(changes_dir)
            result = timed_merge(spark, lake, manifest, spark.read.parquet(changes_dir),
                                 f"{work}/merged_{rows}_{spread}", args.segment_rows)
            expected = rows + args.changes
            assert (result["history_rows"], result["current_rows"]) == (expected, rows), result
            peer = duckdb_merge(base, TABLE.name, changes_dir, f"{work}/duckdb_{rows}_{spread}")
            assert (peer["history_rows"], peer["current_rows"]) == (expected, rows), peer
            shutil.rmtree(f"{work}/merged_{rows}_{spread}")
            shutil.rmtree(f"{work}/duckdb_{rows}_{spread}")
            print(f"{rows:>11,} rows, {spread:>10}: Spark {result['seconds']} s (rewrote "
                  f"{result['rewritten_segments']} of {result['segments']} segments, linked {result['linked_files']} "
                  f"files), DuckDB {peer['seconds']} s, Spark/DuckDB {result['seconds'] / peer['seconds']:.2f}x")
            results.setdefault(spread, {})[rows] = {"spark": result, "duckdb": peer}
        shutil.rmtree(work / f"base_{rows}")
    growth = {spread: {engine: {str(rows): round(by_size[rows][engine]["seconds"] / by_size[sizes[0]][engine][
        "seconds"], 2) for rows in sizes[1:]} for engine in ("spark", "duckdb")} for spread, by_size in results.items()}
    for spread, by_engine in growth.items():
        for rows in sizes[1:]:
            print(f"{rows // sizes[0]}x the table ({spread}): Spark {by_engine['spark'][str(rows)]}x the time, "
                  f"DuckDB {by_engine['duckdb'][str(rows)]}x (1.0 = the cost follows the changes)")
    print(json.dumps({"sizes": sizes, "changes": args.changes, "keys": args.keys, "segment_rows": args.segment_rows,
                      "cores": os.cpu_count(), "results": {s: {str(k): v for k, v in r.items()}
                                                           for s, r in results.items()}, "growth": growth}))
    spark.stop()
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
