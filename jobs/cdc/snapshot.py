"""OLTP table -> bronze/cdc_snapshots/<table>/: a full snapshot (JDBC or a CSV/JSON dump) for onboarding into CDC.

JDBC: the watermark (`pg_current_wal_lsn()`, and the time) is read *before* the table, then the
table is read in parallel: range partitions on the primary key (Spark's `partitionColumn` for a
numeric key, `percentile_disc` boundaries for any other) with a fetch size, so executors
stream rows instead of buffering the table. Rows read later than the watermark may already
contain changes after it; the merge re-applies those changes on top, which converges to the
source (a change applied twice gives the same row).

Dump file: a CSV (with header) or JSON-lines export of a table; its watermark is the source
position at export time (`--watermark-lsn`, or `--watermark-binlog mysql-bin.000003:1041`).

Either way the rows go to `bronze/cdc_snapshots/<table>/snapshot_id=<id>/` with a manifest
(watermark, time, rows, partitions); the next `cdc_merge` starts the table from it and applies
only changes after the watermark. Rows without a primary key or with values that do not fit the
configured types are quarantined and counted.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from dataclasses import dataclass
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from jobs.cdc import STAGE, state
from jobs.cdc.settings import Table
from jobs.common.paths import Lake
from jobs.common.run import Output, Run
from jobs.common.runner import new_run_id
from jobs.common.spark import LakeFS

log = logging.getLogger(__name__)
JOB = "cdc_snapshot"
MAX_BINLOG_NAME = 255  # MySQL binlog file names are short; anything longer is not one
NUMERIC_KEYS = {"bigint", "int"}


@dataclass(frozen=True)
class Jdbc:
    url: str
    user: str | None
    password: str | None
    partitions: int = 4
    fetch_size: int = 10_000

    def options(self) -> dict[str, str]:
        opts = {"url": self.url, "driver": "org.postgresql.Driver", "fetchsize": str(self.fetch_size)}
        opts.update({k: v for k, v in (("user", self.user), ("password", self.password)) if v})
        return opts


def quoted(source: str) -> str:
    return ".".join(f'"{part}"' for part in source.split("."))


def _query(spark: SparkSession, jdbc: Jdbc, sql: str) -> list[Any]:
    return spark.read.format("jdbc").options(**jdbc.options()).option("query", sql).load().collect()


def jdbc_watermark(spark: SparkSession, jdbc: Jdbc) -> tuple[list[int], str]:
    """The WAL position and time now, before the table is read (a low watermark)."""
    now = "to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"
    row = _query(spark, jdbc, f"SELECT (pg_current_wal_lsn() - '0/0'::pg_lsn)::bigint AS lsn, {now} AS ts")[0]
    return [int(row["lsn"])], row["ts"]


def read_jdbc(spark: SparkSession, jdbc: Jdbc, table: Table) -> tuple[DataFrame, int]:
    """The table in `jdbc.partitions` range partitions on its primary key; returns (rows, partitions)."""
    reader = spark.read.format("jdbc").options(**jdbc.options())
    pk = table.primary_key[0]
    column = table.column(pk)
    if len(table.primary_key) == 1 and column is not None and column.type in NUMERIC_KEYS:
        bounds = _query(spark, jdbc, f'SELECT min("{pk}") AS lo, max("{pk}") AS hi FROM {quoted(table.source)}')[0]
        if bounds["lo"] is None:
            return reader.option("dbtable", quoted(table.source)).load(), 1
        return reader.options(dbtable=quoted(table.source), partitionColumn=pk, lowerBound=str(bounds["lo"]),
                              upperBound=str(int(bounds["hi"]) + 1), numPartitions=str(jdbc.partitions)).load(), \
            jdbc.partitions
    fractions = ",".join(str(n / jdbc.partitions) for n in range(1, jdbc.partitions))
    cuts = _query(spark, jdbc, f'SELECT percentile_disc(ARRAY[{fractions}]) WITHIN GROUP (ORDER BY "{pk}") AS cuts '
                               f"FROM {quoted(table.source)}")[0]["cuts"] or []
    cuts = sorted(set(cuts))
    literal = [str(c).replace("'", "''") for c in cuts]
    predicates = [f""""{pk}" < '{literal[0]}'"""] if literal else ["TRUE"]
    predicates += [f""""{pk}" >= '{a}' AND "{pk}" < '{b}'""" for a, b in zip(literal, literal[1:], strict=False)]
    predicates += [f""""{pk}" >= '{literal[-1]}'"""] if literal else []
    props = jdbc.options()
    url = props.pop("url")
    return spark.read.jdbc(url, quoted(table.source), predicates=predicates, properties=props), len(predicates)


def read_dump(spark: SparkSession, path: str, fmt: str) -> DataFrame:
    """A CSV (header) or JSON-lines dump with every value as text; typing happens in `typed`."""
    if fmt == "csv":
        return spark.read.option("header", "true").option("inferSchema", "false").csv(path)
    return spark.read.option("primitivesAsString", "true").json(path)


def typed(rows: DataFrame, table: Table) -> tuple[DataFrame, DataFrame]:
    """Cast configured columns to their types; (good rows, quarantined rows with a reason).

    A value that is present but does not cast, or a missing primary key, quarantines the row.
    """
    configured = [c for c in table.columns if c.name in rows.columns]
    casts = {c.name: F.col(c.name).try_cast(c.type) for c in configured}
    failed = [F.when(F.col(c.name).isNotNull() & casts[c.name].isNull(), F.lit(c.name)) for c in configured]
    no_key = [F.when(F.col(k).isNull(), F.lit(k)) for k in table.primary_key if k in rows.columns]
    missing = [k for k in table.primary_key if k not in rows.columns]
    if missing:
        raise ValueError(f"{table.name}: the snapshot has no primary key column(s) {missing}")
    reason = (F.when(F.size(F.array_compact(F.array(*no_key))) > 0,
                     F.concat(F.lit("missing_primary_key:"), F.array_join(F.array_compact(F.array(*no_key)), ",")))
              .when(F.size(F.array_compact(F.array(*failed))) > 0,
                    F.concat(F.lit("undecodable_value:"), F.array_join(F.array_compact(F.array(*failed)), ","))))
    checked = rows.withColumn("_reason", reason)
    good = checked.where(F.col("_reason").isNull()).select(
        *[casts.get(c, F.col(c)).alias(c) for c in rows.columns])
    bad = checked.where(F.col("_reason").isNotNull()).select(
        F.col("_reason").alias("reason"), F.to_json(F.struct(*rows.columns)).alias("raw_value"))
    return good, bad


def parse_watermark(lsn: str | None, binlog: str | None) -> list[int]:
    """`--watermark-lsn` (a number or PostgreSQL's `16/B374D848`) or `--watermark-binlog file:pos`."""
    if lsn:
        if "/" in lsn:
            high, low = lsn.split("/")
            return [(int(high, 16) << 32) + int(low, 16)]
        return [int(lsn)]
    if binlog:  # split once from the right and match anchored, short pieces: linear in the input
        name, _, pos = binlog.rpartition(":")
        number = re.search(r"(\d{1,10})$", name[-MAX_BINLOG_NAME:])
        if len(binlog) > MAX_BINLOG_NAME + 21 or not number or not re.fullmatch(r"\d{1,20}", pos):
            raise ValueError(f"--watermark-binlog must look like mysql-bin.000003:1041, got {binlog[:80]!r}")
        return [int(number.group(1)), int(pos), 0]
    raise ValueError("a dump needs its watermark: --watermark-lsn or --watermark-binlog (the source position "
                     "when the export started), so the merge knows which changes come after it")


def write_snapshot(this: Run, table: Table, rows: DataFrame, bad: DataFrame, watermark: list[int],
                   taken_at: str, source: str, partitions: int) -> dict[str, Any]:
    """Stage, count and publish one table's snapshot and its quarantine, the manifest last (the commit marker)."""
    spark, lake = rows.sparkSession, this.lake
    snapshot_id = f"{re.sub(r'[^0-9T]', '', taken_at)[:15]}-{'.'.join(map(str, watermark))}"
    staged = {"bronze": this.table_staging("bronze", f"cdc_snapshots_{table.name}"),
              "quarantine": this.table_staging("quarantine", f"cdc_snapshots_{table.name}")}
    state.snapshot_changes(rows, table, watermark, taken_at, source).write.parquet(staged["bronze"])
    bad.write.parquet(staged["quarantine"])
    written = spark.read.parquet(staged["bronze"])
    manifest = {"table": table.name, "source": table.source, "snapshot_id": snapshot_id, "watermark": watermark,
                "taken_at": taken_at, "read_from": source, "partitions": partitions, "rows": written.count(),
                "distinct_keys": written.select("key").distinct().count(),
                "quarantined": spark.read.parquet(staged["quarantine"]).count(), **this.header()}
    this.publish([Output(staged["quarantine"], lake.snapshot_quarantine(table.name, snapshot_id)),
                  Output(staged["bronze"], lake.snapshot(table.name, snapshot_id), manifest)])
    return manifest


def _run(spark: SparkSession, lake: Lake, taken_at: str, run_id: str | None) -> Run:
    """A snapshot's run is dated by the moment it was taken; it writes in the CDC group (a merge never reads
    a snapshot half published)."""
    return Run(JOB, lake, dt.date.fromisoformat(taken_at[:10]), run_id or new_run_id(), group=STAGE,
               fs=LakeFS(spark))


def snapshot_jdbc(spark: SparkSession, lake: Lake, table: Table, jdbc: Jdbc,
                  run_id: str | None = None) -> dict[str, Any]:
    watermark, taken_at = jdbc_watermark(spark, jdbc)
    rows, partitions = read_jdbc(spark, jdbc, table)
    good, bad = typed(rows, table)
    with _run(spark, lake, taken_at, run_id) as this:
        return write_snapshot(this, table, good, bad, watermark, taken_at, f"jdbc:{table.source}", partitions)


def snapshot_dump(spark: SparkSession, lake: Lake, table: Table, path: str, fmt: str, watermark: list[int],
                  taken_at: str | None = None, run_id: str | None = None) -> dict[str, Any]:
    taken_at = taken_at or dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    good, bad = typed(read_dump(spark, path, fmt), table)
    with _run(spark, lake, taken_at, run_id) as this:
        return write_snapshot(this, table, good, bad, watermark, taken_at, f"dump:{path}", 1)
