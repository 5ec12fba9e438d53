"""Debezium change events -> bronze change log -> silver `<table>_current` and `<table>_history`.

For date D the job parses every CDC record drained on Kafka date D (`raw/cdc.<schema>.<table>/`),
or, with `--export DIR`, a directory of Debezium events written by a Kafka Connect file or S3
sink (JSON lines or one event per file). Changes go to `bronze/cdc_changes/dt=D` (every change
kept, with its source position), bad records to `quarantine/cdc_changes/dt=D` with a reason.
Each configured table is then merged in source order (`jobs/cdc/merge.py`), starting from a
pending snapshot if `cdc_snapshot` wrote one. The change log and every silver table pass their
Great Expectations suites before anything is published; then bronze, quarantine, each table's
history and current are swapped in by rename and `reports/cdc/dt=D/run.json` says what
happened, with every count. A failed gate publishes nothing and exits 3.

    spark-submit jobs/cdc_merge.py --date 2026-11-20 [--end-date 2026-11-22 | --export DIR] [--lake-root URI]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import sys
import time
import uuid
from typing import Any

from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from jobs.cdc import changelog, merge, settings, state
from jobs.cdc.settings import Settings, Table
from jobs.common import config, exit_codes
from jobs.common.paths import Lake, date_arg, date_range
from jobs.common.spark import LakeFS, get_spark, read_raw

log = logging.getLogger("cdc_merge")


def history_checks(history: DataFrame) -> DataFrame:
    """The per-key columns the history suite checks: successor start, reopening, current key, interval state."""
    order = Window.partitionBy("_key").orderBy("_pos_from")
    successor = F.lead("valid_from").over(order)
    state_ = (F.when(F.col("is_current") & F.col("valid_to").isNull(), "open")
              .when(~F.col("is_current") & F.col("valid_to").isNotNull(), "closed").otherwise("inconsistent"))
    return history.select(
        "_key", "valid_from", "valid_to", "is_current",
        F.when(F.col("closed_by").isin(merge.IMAGE_OPS), successor).alias("_successor_from"),
        F.when(F.col("closed_by").isin("d", "t"), successor).alias("_reopened_from"),
        F.when(F.col("is_current"), F.col("_key")).alias("_current_key"),
        state_.alias("_interval_state"))


def read_changes(spark: SparkSession, lake_fs: LakeFS, lake: Lake, cdc: Settings, day: dt.date,
                 export: str | None) -> tuple[DataFrame, list[str]]:
    """The day's parsed records and the inputs they came from (none: an empty day).

    Every drained `<topic_prefix>.*` topic is read, configured or not: a table Debezium captures
    but include/cdc.yaml does not know is reported (quarantined, named in run.json), never ignored.
    """
    if export:
        return changelog.read_export(spark, export, cdc), [export]
    topics = [d for d in lake_fs.list_dirs(f"{lake.root}/raw") if d.rsplit("/", 1)[-1].startswith(
        f"{cdc.topic_prefix}.")]
    dirs = [f"{d}/kafka_date={day.isoformat()}" for d in topics]
    dirs = [d for d in dirs if lake_fs.exists(d)]
    if not dirs:
        return spark.createDataFrame([], changelog.PARSED_SCHEMA), []
    return changelog.parse_raw(read_raw(spark, dirs), cdc), dirs


def _write(df: DataFrame, uri: str) -> DataFrame:
    df.write.mode("overwrite").parquet(uri)
    return df.sparkSession.read.parquet(uri)


def write_table(df: DataFrame, uri: str) -> DataFrame:
    """A whole silver table, in at most spark.sql.shuffle.partitions files (merged without a shuffle), so
    the copied untouched part and each night's new part do not add up to ever more small files."""
    return _write(df.coalesce(int(df.sparkSession.conf.get("spark.sql.shuffle.partitions"))), uri)


def merge_table(spark: SparkSession, lake_fs: LakeFS, lake: Lake, table: Table, changes: DataFrame,
                tombstones: DataFrame, day: dt.date, run_id: str, has_changes: bool) -> dict[str, Any] | None:
    """Merge one table into staging and validate it; returns what to publish and the counts, or None
    when there is nothing to merge (no changes and no pending snapshot: silver stays as it is)."""
    from jobs.common.validation import validate  # GX import is slow: only when validating

    published = state.history_manifest(lake_fs, lake, table)
    applied = list(published.get("applied_snapshots", []))
    snapshot, snapshot_ids = state.pending_snapshot(spark, lake_fs, lake, table, applied)
    if snapshot is None and not has_changes:
        return None
    silver = state.silver_of(spark, lake, table, published)
    watermark = snapshot.watermark if snapshot else silver.watermark
    before_watermark = changes.where(F.col("pos") <= merge.position(watermark)).count() if watermark else 0
    merged = merge.merge(table, silver, changes, snapshot)
    merged.events.persist(StorageLevel.MEMORY_AND_DISK)
    try:
        staged = {kind: lake.table_staging("silver", f"{table.name}_{kind}", run_id) for kind in ("history", "current")}
        history = write_table(merged.history, staged["history"])
        current = write_table(merged.current, staged["current"])
        outcomes = merge.count_outcomes(merged.events)
    finally:
        merged.events.unpersist()
    live = current.count()
    unmatched = merge.unmatched_tombstones(tombstones, changes, current)
    docs = f"{lake.data_docs()}/cdc/{table.name}/dt={day.isoformat()}/run_id={run_id}"
    checks = history_checks(history).persist(StorageLevel.MEMORY_AND_DISK)  # one window pass, not one per check
    try:
        gates = [validate(checks, "cdc_history", {"live_keys": live}, f"{docs}/history", lake_fs),
                 validate(current, "cdc_current", {"live_keys": live}, f"{docs}/current", lake_fs)]
    finally:
        checks.unpersist()
    manifest = {
        "table": table.name, "dt": day.isoformat(), "run_id": run_id, "code_version": config.code_version(),
        "watermark": watermark, "applied_snapshots": sorted(set(applied) | set(snapshot_ids)),
        "snapshot_applied": snapshot_ids[-1] if snapshot_ids else None,
        "columns": merged.columns, "new_columns": merged.new_columns, "truncates": list(merged.truncates),
        "counts": {"changes": sum(v for k, v in outcomes.items() if not k.endswith(":duplicate")),
                   "events": outcomes, "before_snapshot_watermark": before_watermark,
                   "current_rows": live, "history_rows": history.count()},
        "validation": [{"suite": g.suite, "success": g.success, "failures": g.failures, "data_docs": g.data_docs}
                       for g in gates],
    }
    return {"manifest": manifest, "staged": staged, "ok": all(g.success for g in gates),
            "unmatched_tombstones": unmatched}


def _publish_table(lake_fs: LakeFS, lake: Lake, table: Table, result: dict[str, Any]) -> None:
    """History first, then current: a crash in between leaves current behind, and the next run of
    the same date rebuilds the touched keys' current rows from history."""
    for kind, final in (("history", state.history_path(lake, table)), ("current", state.current_path(lake, table))):
        lake_fs.write_text(lake.manifest(result["staged"][kind]), json.dumps(result["manifest"], indent=2, default=str))
        lake_fs.publish(result["staged"][kind], final)


def run(spark: SparkSession, lake: Lake, day: dt.date, cdc: Settings, export: str | None = None) -> dict[str, Any]:
    """The whole job for one date; returns run.json (status `published` or `rejected`)."""
    from jobs.common.validation import validate

    started = time.time()
    lake_fs = LakeFS(spark)
    run_id = f"{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"
    parsed, inputs = read_changes(spark, lake_fs, lake, cdc, day, export)
    # the day's tombstones and quarantine, written once so the parse is not re-run; deleted at the end
    scratch = {name: lake.staging("bronze", f"_cdc_{name}", day, run_id) for name in ("tombstones", "quarantine")}
    parsed = parsed.persist(StorageLevel.MEMORY_AND_DISK)
    try:
        counts = changelog.count_kinds(parsed)
        unconfigured = sorted(r["source"] for r in parsed.where(
            F.col("reason").startswith("no_primary_key_configured")).select("source").distinct().collect())
        bronze_staged = lake.staging("bronze", state.CHANGES, day, run_id)
        bronze = _write(changelog.to_bronze(parsed), bronze_staged)
        quarantine = changelog.to_quarantine(parsed)
        tombstones = parsed.where(F.col("kind") == "tombstone").select("table", "key")
        tombstones = _write(tombstones, scratch["tombstones"])
        quarantine = _write(quarantine, scratch["quarantine"])
    finally:
        parsed.unpersist()
    for source in unconfigured:
        log.error("CDC events for table %s were quarantined: it has no primary key configured; add it to "
                  "include/cdc.yaml (source, primary_key, columns) and replay the day", source)
    docs = f"{lake.data_docs()}/cdc/changes/dt={day.isoformat()}/run_id={run_id}"
    gate = validate(bronze, "cdc_changes", {"tables": [t.name for t in cdc.tables]}, docs, lake_fs)
    tables: dict[str, dict[str, Any]] = {}
    per_table = {r["table"]: r["count"] for r in bronze.groupBy("table").count().collect()}
    for table in cdc.tables if gate.success else []:
        result = merge_table(spark, lake_fs, lake, table, bronze.where(F.col("table") == table.name),
                             tombstones.where(F.col("table") == table.name), day, run_id,
                             has_changes=bool(per_table.get(table.name)))
        if result is None:
            log.info("%s: no changes on %s and no pending snapshot; silver unchanged", table.name, day)
        else:
            tables[table.name] = result
    bad_tombstones = [r["unmatched_tombstones"].select(
        F.lit("tombstone_without_delete").alias("reason"), F.lit("tombstone").alias("kind"), "table", "key")
        for r in tables.values()]
    q_staged = lake.staging("quarantine", state.CHANGES, day, run_id)
    for extra in bad_tombstones:
        quarantine = quarantine.unionByName(extra, allowMissingColumns=True)
    quarantine.write.parquet(q_staged)
    unmatched = spark.read.parquet(q_staged).where(F.col("reason") == "tombstone_without_delete").count()
    counts.update({"quarantined:tombstone_without_delete": unmatched} if unmatched else {})
    report = {
        "dt": day.isoformat(), "run_id": run_id, "job": "cdc_merge", "code_version": config.code_version(),
        "inputs": inputs, "counts": dict(sorted(counts.items())),
        "quarantined": sum(v for k, v in counts.items() if k.startswith("quarantined:")),
        "unconfigured_sources": unconfigured,
        "validation": {"suite": gate.suite, "success": gate.success, "failures": gate.failures,
                       "data_docs": gate.data_docs},
        "tables": {name: r["manifest"] for name, r in tables.items()},
    }
    ok = gate.success and all(r["ok"] for r in tables.values())
    if ok:
        lake_fs.write_text(lake.manifest(bronze_staged), json.dumps(report, indent=2, default=str))
        lake_fs.publish(bronze_staged, lake.partition("bronze", state.CHANGES, day))
        lake_fs.publish(q_staged, lake.partition("quarantine", state.CHANGES, day))
        for table in cdc.tables:
            if table.name in tables:
                _publish_table(lake_fs, lake, table, tables[table.name])
        report["status"] = "published"
    else:
        rejected = lake.rejected("bronze", state.CHANGES, day, run_id)
        staged = {"bronze": bronze_staged, "quarantine": q_staged}
        staged.update({f"{n}_{k}": p for n, r in tables.items() for k, p in r["staged"].items()})
        for name, path in staged.items():
            lake_fs.move(path, f"{rejected}/{name}")
            lake_fs.prune_staging(path)
        report.update(status="rejected", rejected_batch=rejected)
    for path in scratch.values():
        lake_fs.delete(path)
        lake_fs.prune_staging(path)
    report["seconds"] = round(time.time() - started, 2)
    lake_fs.write_text(state.report_path(lake, day), json.dumps(report, indent=2, default=str))
    return report


def failures(report: dict[str, Any]) -> list[str]:
    """Every failed expectation of the run, prefixed by the suite (and table)."""
    found = [f"cdc_changes: {f}" for f in report["validation"]["failures"]]
    for name, manifest in report["tables"].items():
        found += [f"{name} {v['suite']}: {f}" for v in manifest["validation"] for f in v["failures"]]
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--date", required=True, type=date_arg, help="Kafka date (UTC) whose CDC records to merge")
    parser.add_argument("--end-date", type=date_arg,
                        help="backfill: merge every date from --date to this one, in order, in one Spark session")
    parser.add_argument("--export", help="replay a Kafka Connect sink export (directory or file URI) instead of raw/")
    parser.add_argument("--lake-root", default=config.lake_root(), help="lake root URI (default: %(default)s)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        days = date_range(args.date, args.end_date)
        if args.export and len(days) > 1:
            raise ValueError("--export replays one export: give no --end-date")
        cdc = settings.load()
    except (ValueError, settings.CdcSettingsError) as exc:
        print(f"cdc_merge failed: {exc}", file=sys.stderr)
        return exit_codes.FAILED
    spark = get_spark(f"cdc_merge:{args.date}")
    try:
        for day in days:  # in order: each date's merge starts from the previous one's silver tables
            report = run(spark, Lake(args.lake_root), day, cdc, args.export)
            print_report(report)
            if report["status"] == "rejected":
                print(f"cdc_merge failed: nothing published for dt={day}; GX: {'; '.join(failures(report))}; "
                      f"batch kept at {report['rejected_batch']}", file=sys.stderr)
                return exit_codes.VALIDATION_REJECTED
    finally:
        spark.stop()
    return 0


def print_report(report: dict[str, Any]) -> None:
    print(json.dumps({k: report.get(k) for k in ("status", "dt", "run_id", "counts", "unconfigured_sources")},
                     indent=2, default=str))
    for name, manifest in report["tables"].items():
        print(f"{name}: {manifest['counts']['current_rows']} current rows, {manifest['counts']['history_rows']} "
              f"versions; events {json.dumps(manifest['counts']['events'])}")


if __name__ == "__main__":
    sys.exit(main())
