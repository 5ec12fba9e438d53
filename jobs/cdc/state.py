"""What state a CDC table is in: its silver tables, the manifests' watermark and truncates, pending snapshots."""

from __future__ import annotations

import json
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from jobs.cdc.layout import Plan
from jobs.cdc.scd2 import Silver, Snapshot
from jobs.cdc.settings import Table
from jobs.common.paths import Lake
from jobs.common.spark import LakeFS

#: The bronze change log's table name: bronze/cdc_changes/dt=D
CHANGES = "cdc_changes"


def history_manifest(lake_fs: LakeFS, lake: Lake, table: Table) -> dict[str, Any]:
    """The published history's manifest: watermark, applied snapshots, truncates ({} before the first merge)."""
    return json.loads(lake_fs.read_text(lake.manifest(lake.silver(table.name, "history"))) or "{}")


def silver_of(spark: SparkSession, lake: Lake, table: Table, manifest: dict[str, Any], plan: Plan) -> Silver:
    """The table's silver state as the merge starts from it: what the plan reads (all of it, or the segments the
    changes fall into) and the table-level state; empty before the first merge."""
    if not manifest:
        return Silver(None, None)
    history = lake.silver(table.name, "history")
    orphans = Lake.orphan_deletes(history)
    return Silver(plan.read(spark, history, "history"), plan.read(spark, lake.silver(table.name, "current"), "current"),
                  manifest.get("watermark"), tuple(manifest.get("truncates", [])),
                  spark.read.parquet(orphans) if LakeFS(spark).exists(orphans) else None)


def _pending(lake_fs: LakeFS, lake: Lake, table: Table, applied: list[str]) -> list[tuple[dict, str, str]]:
    """Published snapshots (manifest, directory, id) not applied to silver yet."""
    pending = []
    for directory in lake_fs.list_dirs(lake.snapshots(table.name)):
        snapshot_id = directory.rsplit("snapshot_id=", 1)[-1]
        text = lake_fs.read_text(lake.manifest(directory))
        if "snapshot_id=" in directory and text and snapshot_id not in applied:
            pending.append((json.loads(text), directory, snapshot_id))
    return pending


def pending_snapshot(spark: SparkSession, lake_fs: LakeFS, lake: Lake, table: Table,
                     applied: list[str]) -> tuple[Snapshot | None, list[str]]:
    """The newest published snapshot not applied yet, and the ids it supersedes (all pending ones)."""
    pending = _pending(lake_fs, lake, table, applied)
    if not pending:
        return None, []
    manifest, directory, _ = max(pending, key=lambda p: p[0]["watermark"])
    rows = spark.read.parquet(directory)
    return Snapshot(rows, manifest["watermark"], manifest["taken_at"]), sorted(p[2] for p in pending)


def snapshot_changes(rows: DataFrame, table: Table, watermark: list[int], taken_at: str, source: str) -> DataFrame:
    """Typed table rows -> change-log rows (`op=r` at the watermark), the shape the merge replays."""
    data = [c for c in rows.columns]
    image = F.to_json(F.struct(*data), {"timestampFormat": "yyyy-MM-dd'T'HH:mm:ss.SSSSSSXXX",
                                         "ignoreNullFields": "false"})
    return rows.select(
        F.lit(table.name).alias("table"), F.lit("r").alias("op"),
        F.to_json(F.array(*table.primary_key)).alias("key"),
        F.array(*[F.lit(p).cast("bigint") for p in watermark]).alias("pos"),
        F.to_timestamp(F.lit(taken_at)).alias("source_ts"), F.lit(None).cast("string").alias("tx_id"),
        F.lit(None).cast("bigint").alias("tx_order"),
        F.lit("true").alias("snapshot"), F.lit(source).alias("connector"), F.lit(None).cast("string").alias("before"),
        image.alias("after"), F.lit(None).cast("string").alias("column_types"),
        F.lit(None).cast("string").alias("kafka_topic"), F.lit(None).cast("int").alias("kafka_partition"),
        F.lit(None).cast("bigint").alias("kafka_offset"), F.lit(None).cast("string").alias("source_file"))
