"""Keep every Iceberg table of the lake small and fast to read, with Iceberg's own procedures.

Each night's commit adds files and a snapshot, and a merge-on-read write adds delete files; left alone, readers
open ever more small files and the metadata grows without end. For each table of the catalog, in order:

1. `rewrite_data_files`: small data files (and data files with deletes) compacted to `target_file_size_mb`;
2. `rewrite_position_delete_files`: the delete files that remain, compacted;
3. `expire_snapshots`: snapshots older than `snapshot_retention_days` dropped (the newest
   `retain_last_snapshots` kept), and with them the files only they referenced;
4. `remove_orphan_files`: files under the table that no snapshot references and older than
   `orphan_file_age_hours` (what a killed write left) deleted.

Each step is one Iceberg commit or a delete of unreferenced files, so a killed run leaves a readable table and the
next run goes on. A writer that commits meanwhile is not lost: a compaction that conflicts with it fails and is
retried by the next run.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from typing import Any

from pyspark.sql import SparkSession

from jobs.common import catalog, config, storage
from jobs.common.paths import Lake
from jobs.common.settings import MaintenanceSettings

log = logging.getLogger(__name__)


def lake_tables(spark: SparkSession, lake: Lake) -> list[str]:
    """Every table of the lake's catalog, as `zone.table`."""
    catalog.use(spark, lake)
    namespaces = [row[0] for row in spark.sql(f"SHOW NAMESPACES IN {catalog.NAME}").collect()]
    return sorted(f"{ns}.{row['tableName']}" for ns in namespaces
                  for row in spark.sql(f"SHOW TABLES IN {catalog.NAME}.{ns}").collect())


def _call(spark: SparkSession, procedure: str, **args: str) -> list[dict[str, Any]]:
    """The rows an Iceberg procedure returns (a summary row, or a row per file it removed)."""
    named = ", ".join(f"{name} => {value}" for name, value in args.items())
    return [row.asDict() for row in spark.sql(f"CALL {catalog.NAME}.system.{procedure}({named})").collect()]


def _at(moment: dt.datetime) -> str:
    return f"TIMESTAMP '{moment:%Y-%m-%d %H:%M:%S}'"


def _files(spark: SparkSession, table: str) -> dict[str, int]:
    found = spark.sql(f"SELECT count(*) AS files, coalesce(sum(file_size_in_bytes), 0) AS bytes "
                      f"FROM {catalog.NAME}.{table}.all_files").first()
    snapshots = spark.sql(f"SELECT count(*) FROM {catalog.NAME}.{table}.snapshots").first()[0]
    return {"files": int(found["files"]), "bytes": int(found["bytes"]), "snapshots": int(snapshots)}


def maintain(spark: SparkSession, table: str, settings: MaintenanceSettings, now: dt.datetime) -> dict[str, Any]:
    """The four steps for one table (`zone.table`); what each did, and the table's files before and after."""
    before = _files(spark, table)
    name = f"'{table}'"
    options = f"map('target-file-size-bytes', '{settings.target_file_size_mb * 1024 * 1024}', 'min-input-files', '2')"
    [compacted] = _call(spark, "rewrite_data_files", table=name, options=options)
    [deletes] = _call(spark, "rewrite_position_delete_files", table=name)
    [expired] = _call(spark, "expire_snapshots", table=name,
                      older_than=_at(now - dt.timedelta(days=settings.snapshot_retention_days)),
                      retain_last=str(settings.retain_last_snapshots))
    orphans = _call(spark, "remove_orphan_files", table=name,
                    older_than=_at(now - dt.timedelta(hours=settings.orphan_file_age_hours)))
    done = {"before": before, "after": _files(spark, table),
            "compacted": {"data_files_rewritten": compacted.get("rewritten_data_files_count", 0),
                          "data_files_added": compacted.get("added_data_files_count", 0),
                          "delete_files_rewritten": deletes.get("rewritten_delete_files_count", 0)},
            "expired": {k: v for k, v in expired.items() if v},
            "orphan_files_removed": len(orphans)}
    log.info("%s: %s", table, done)
    return done


def run(spark: SparkSession, lake: Lake, day: dt.date, settings: MaintenanceSettings,
        now: dt.datetime | None = None, only: list[str] | None = None) -> dict[str, Any]:
    """Maintain every table of the catalog (or `only` those); the report, per table, also kept in the lake
    (`reports/maintenance/dt=D/run.json`)."""
    now = now or dt.datetime.now(dt.UTC)
    spark.conf.set("spark.sql.session.timeZone", "UTC")  # the cut-off timestamps below are UTC
    names = lake_tables(spark, lake)
    unknown = sorted(set(only or []) - set(names))
    if unknown:
        raise ValueError(f"no such table in the lake's catalog: {', '.join(unknown)} (tables: {', '.join(names)})")
    report = {"status": "done", "dt": day.isoformat(), "at": now.isoformat(), **config.code_identity(),
              "tables": {table: maintain(spark, table, settings, now) for table in (only or names)}}
    storage.write_atomic(lake.report_file("maintenance", day), json.dumps(report, indent=2, default=str).encode())
    return report
