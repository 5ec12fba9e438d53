"""Iceberg tables of the lake from Spark: declared, replaced a day at a time in one commit, their snapshots named.

Every write is one Iceberg commit (a compare-and-swap of the table's metadata pointer in the catalog,
`jobs/common/catalog.py`): a reader sees the table before or after it, never half of it; a process killed before
the commit leaves only unreferenced files (removed by the maintenance's `remove_orphan_files`); two writers are
serialised by the catalog. Each commit carries the run id in its snapshot summary (`run-id`), so a run report can
name the snapshot it wrote and anyone can find which run wrote a snapshot.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from jobs.common import catalog
from jobs.common.paths import Lake

#: Format v2: row-level deletes (merge-on-read) and Spark's MERGE INTO, read by every current engine.
PROPERTIES = {"format-version": "2", "write.parquet.compression-codec": "zstd"}


@dataclass(frozen=True)
class TableSpec:
    """A lake table's declaration: `zone.name`, its columns (Spark DDL) and its partition columns."""

    zone: str
    name: str
    columns: str
    partitioned_by: tuple[str, ...] = ()

    @property
    def qualified(self) -> str:
        return catalog.table_name(self.zone, self.name)


def ensure(spark: SparkSession, lake: Lake, spec: TableSpec) -> str:
    """The table, created with its declared schema and partition spec when missing; its qualified name."""
    catalog.use(spark, lake)
    spark.sql(f"CREATE NAMESPACE IF NOT EXISTS {catalog.NAME}.{spec.zone}")
    partitioned = f" PARTITIONED BY ({', '.join(spec.partitioned_by)})" if spec.partitioned_by else ""
    properties = ", ".join(f"'{k}'='{v}'" for k, v in PROPERTIES.items())
    spark.sql(f"CREATE TABLE IF NOT EXISTS {spec.qualified} ({spec.columns}) USING iceberg{partitioned} "
              f"TBLPROPERTIES ({properties})")
    return spec.qualified


def replace_where(frame: DataFrame, table: str, condition: Column, run_id: str) -> int:
    """Replace the rows matching `condition` (e.g. one day) by `frame` in one commit, also when `frame` is empty;
    the id of the snapshot this run committed. A rerun replaces the same rows again: never a duplicate."""
    frame.writeTo(table).option("snapshot-property.run-id", run_id).overwrite(condition)
    return committed_snapshot(frame.sparkSession, table, run_id)


def committed_snapshot(spark: SparkSession, table: str, run_id: str) -> int:
    """The newest snapshot of `table` that run `run_id` committed."""
    found = spark.sql(f"SELECT snapshot_id FROM {table}.snapshots WHERE summary['run-id'] = '{run_id}' "
                      "ORDER BY committed_at DESC LIMIT 1").collect()
    if not found:
        raise RuntimeError(f"{table}: no snapshot committed by run {run_id}")
    return int(found[0][0])


def current_snapshot(spark: SparkSession, table: str) -> int | None:
    """The snapshot a reader of `table` sees now (None: the table has no snapshot yet), for a run report."""
    found = spark.sql(f"SELECT snapshot_id FROM {table}.refs WHERE name = 'main'").collect()
    return int(found[0][0]) if found else None


def on_day(column: str, day: dt.date) -> Column:
    return F.col(column) == F.lit(day)
