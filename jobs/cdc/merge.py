"""Debezium change events -> bronze change log -> silver `<table>_current` and `<table>_history`.

For date D: every CDC record drained on Kafka date D (`raw/cdc.<schema>.<table>/`), or a Kafka
Connect sink export, is parsed (`changelog.py`); changes go to `bronze/cdc_changes/dt=D`, bad
records to `quarantine/cdc_changes/dt=D` with a reason. Each configured table is merged in source
order (`scd2.py`), starting from a pending snapshot if `cdc_snapshot` wrote one. The change log
and every silver table pass their GX suites before anything is published; then bronze,
quarantine, each table's history and current are swapped in, and `reports/cdc/dt=D/run.json`
says what happened, with every count. A failed gate publishes nothing (exit 3).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from dataclasses import dataclass
from typing import Any

from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from jobs.cdc import STAGE, changelog, layout, scd2, state
from jobs.cdc.settings import Settings, Table
from jobs.common import config
from jobs.common.paths import Lake
from jobs.common.run import Output, Run
from jobs.common.runner import Outcome, new_run_id
from jobs.common.spark import LakeFS, read_raw

log = logging.getLogger(__name__)
JOB = "cdc_merge"
#: The field of a change's image that names the person it is about (the erasure list is keyed by it).
SUBJECT_FIELD = "user_id"


def history_checks(history: DataFrame) -> DataFrame:
    """The per-key columns the history suite checks: successor start, reopening, current key, interval state."""
    order = Window.partitionBy("_key").orderBy("_pos_from")
    successor = F.lead("valid_from").over(order)
    state_ = (F.when(F.col("is_current") & F.col("valid_to").isNull(), "open")
              .when(~F.col("is_current") & F.col("valid_to").isNotNull(), "closed").otherwise("inconsistent"))
    return history.select(
        "_key", "valid_from", "valid_to", "is_current",
        F.when(F.col("closed_by").isin(scd2.IMAGE_OPS), successor).alias("_successor_from"),
        F.when(F.col("closed_by").isin("d", "t"), successor).alias("_reopened_from"),
        F.when(F.col("is_current"), F.col("_key")).alias("_current_key"),
        state_.alias("_interval_state"))


def read_changes(spark: SparkSession, lake_fs: LakeFS, lake: Lake, cdc: Settings, day: dt.date,
                 export: str | None) -> tuple[DataFrame, list[str]]:
    """The day's parsed records and the inputs they came from (none: an empty day).

    Every drained `<topic_prefix>.*` topic is read, configured or not: a table Debezium captures
    but cdc.yaml does not know is reported (quarantined, named in run.json), never ignored.
    """
    if export:
        return changelog.read_export(spark, export, cdc), [export]
    topics = [d.rsplit("/", 1)[-1] for d in lake_fs.list_dirs(lake.zone("raw"))]
    dirs = [lake.raw_day(t, day) for t in topics if t.startswith(f"{cdc.topic_prefix}.")]
    dirs = [d for d in dirs if lake_fs.exists(d)]
    if not dirs:
        return spark.createDataFrame([], changelog.PARSED_SCHEMA), []
    return changelog.parse_raw(read_raw(spark, dirs), cdc), dirs


def _write(df: DataFrame, uri: str) -> DataFrame:
    df.write.mode("overwrite").parquet(uri)
    return df.sparkSession.read.parquet(uri)


@dataclass
class MergedTable:
    """One table's merge, staged and validated: its manifest, where its history and current wait, the verdict."""

    manifest: dict[str, Any]
    staged: dict[str, str]  # kind (history, current) -> staging directory
    ok: bool
    unmatched_tombstones: DataFrame


@dataclass
class StagedTable:
    """A table's merge written to staging: the merge itself, the files' new layout and how it was reached."""

    merged: scd2.Merged
    written: layout.Written
    plan: layout.Plan
    outcomes: dict[str, int]


def stage_table(spark: SparkSession, lake: Lake, table: Table, published: dict[str, Any], changes: DataFrame,
                snapshot: scd2.Snapshot | None, staged: dict[str, str], segment_rows: int) -> StagedTable:
    """Merge a batch into the segments of the table it touches and stage the result (layout.py): the part of
    the job whose cost follows the night's changes, not the table's size."""
    directories = {kind: lake.silver(table.name, kind) for kind in layout.KINDS}
    everything = "a snapshot" if snapshot else (
        "a truncate" if changes.where(F.col("op") == "t").limit(1).count() else None)
    plan = (layout.plan(layout.Layout.of(published), directories, table, changes, everything) if published
            else layout.Plan(None, reason="the first merge"))
    merged = scd2.merge(table, state.silver_of(spark, lake, table, published, plan), changes, snapshot)
    if merged.new_columns and not plan.full:  # every file of a table has one schema: all files get the column
        plan = layout.Plan(plan.layout, reason=f"new column(s) {', '.join(merged.new_columns)}")
        merged = scd2.merge(table, state.silver_of(spark, lake, table, published, plan), changes, snapshot)
    log.info("%s: %s", table.name, f"rewriting all of it ({plan.reason})" if plan.full else
             f"rewriting {len(plan.touched or ())} of {len(plan.layout.segments) if plan.layout else 0} segments")
    rows = plan.rows_read(published.get("counts", {}).get("history_rows", 0)) + changes.count()
    keys = None  # where a full rewrite samples its segment bounds from (a partial one does not list the table)
    if plan.full:
        keys = changes.select(F.col("key").alias("_key"))
        if published:
            keys = keys.unionByName(spark.read.parquet(directories["history"]).select("_key"))
        if snapshot:
            keys = keys.unionByName(snapshot.rows.select(F.col("key").alias("_key")))
    merged.events.persist(StorageLevel.MEMORY_AND_DISK)
    try:
        written = layout.write(merged.history, merged.current, staged, directories, table, plan, segment_rows, rows,
                               keys)
        merged.orphan_deletes.write.parquet(Lake.orphan_deletes(staged["history"]))
        outcomes = scd2.count_outcomes(merged.events)
    finally:
        merged.events.unpersist()
    return StagedTable(merged, written, plan, outcomes)


def merge_table(this: Run, table: Table, changes: DataFrame, tombstones: DataFrame, has_changes: bool,
                segment_rows: int) -> MergedTable | None:
    """Merge one table into staging and validate what was rewritten, or None when there is nothing to merge (no
    changes and no pending snapshot: silver stays as it is)."""
    from jobs.common.validation import validate  # GX import is slow: only when validating

    spark, lake = changes.sparkSession, this.lake
    published = state.history_manifest(this.fs, lake, table)
    applied = list(published.get("applied_snapshots", []))
    snapshot, snapshot_ids = state.pending_snapshot(spark, this.fs, lake, table, applied)
    if snapshot is None and not has_changes:
        return None
    watermark = snapshot.watermark if snapshot else published.get("watermark")
    before_watermark = changes.where(F.col("pos") <= scd2.position(watermark)).count() if watermark else 0
    disagreements = scd2.schema_disagreements(table, changes)
    for column, types in disagreements.items():
        log.warning("%s.%s: the events' schema says %s, cdc.yaml says %s; the events' schema was used", table.name,
                    column, "/".join(types), table.column(column).type)
    staged = {kind: this.table_staging("silver", f"{table.name}_{kind}") for kind in layout.KINDS}
    result = stage_table(spark, lake, table, published, changes, snapshot, staged, segment_rows)
    merged, written = result.merged, result.written
    # the gates see the rewritten segments: the others are the files published and validated before, and keys
    # never cross segments, so every per-key and per-table check holds for the table when it holds for them
    history, current = written.rewritten["history"], written.rewritten["current"]
    live = current.count()
    unmatched = scd2.unmatched_tombstones(tombstones, changes, written.current_holding(tombstones, staged, table))
    docs = this.docs(f"cdc/{table.name}")
    checks = history_checks(history).persist(StorageLevel.MEMORY_AND_DISK)  # one window pass, not one per check
    try:
        gates = [validate(checks, "cdc_history", {"live_keys": live}, f"{docs}/history", this.fs),
                 validate(current, "cdc_current", {"live_keys": live}, f"{docs}/current", this.fs)]
    finally:
        checks.unpersist()
    segments = len(written.layout.segments)
    manifest = {
        "table": table.name, **this.header(),
        "watermark": watermark, "applied_snapshots": sorted(set(applied) | set(snapshot_ids)),
        "snapshot_applied": snapshot_ids[-1] if snapshot_ids else None,
        "columns": merged.columns, "new_columns": merged.new_columns, "truncates": list(merged.truncates),
        "schema_disagreements": disagreements,
        "counts": {"changes": sum(v for k, v in result.outcomes.items() if not k.endswith(":duplicate")),
                   "events": result.outcomes, "before_snapshot_watermark": before_watermark,
                   "current_rows": written.layout.rows("current"), "history_rows": written.layout.rows("history")},
        "rewrite": {"segments": segments, "rewritten": len(written.rewritten_segments),
                    "linked_files": written.linked_files, "full": result.plan.reason if result.plan.full else None,
                    "validated_rows": {"history": written.rewritten_rows("history"), "current": live}},
        "layout": written.layout.as_dict(),
        "validation": [g.as_dict() for g in gates],
    }
    return MergedTable(manifest, staged, all(g.success for g in gates), unmatched)


def table_outputs(lake: Lake, table: Table, merged: MergedTable) -> list[Output]:
    """History first, then current: a crash in between leaves current behind, and the next run of
    the same date rebuilds the touched keys' current rows from history."""
    return [Output(merged.staged[kind], lake.silver(table.name, kind), merged.manifest)
            for kind in ("history", "current")]


def run(spark: SparkSession, lake: Lake, day: dt.date, cdc: Settings, export: str | None = None,
        run_id: str | None = None) -> dict[str, Any]:
    """The whole job for one date; returns run.json (status `published` or `rejected`).

    Every CDC table, the change log and the report are one output group: the merge holds the group's lock
    from reading the silver state to publishing it, so two merges (or a merge and a snapshot) never
    interleave, and a merge killed at any point is finished or undone by the next one."""
    with Run(JOB, lake, day, run_id or new_run_id(), group=STAGE, fs=LakeFS(spark)) as this:
        return _run(spark, this, cdc, export)


def _run(spark: SparkSession, this: Run, cdc: Settings, export: str | None) -> dict[str, Any]:
    from jobs.common.validation import validate

    lake, day = this.lake, this.day
    parsed, inputs = read_changes(spark, this.fs, lake, cdc, day, export)
    parsed = changelog.quarantine_uncastable(parsed, cdc)
    erased = lake.erased_users()
    parsed = changelog.exclude_erased(parsed, spark.read.parquet(erased) if this.fs.exists(erased) else None,
                                      config.ip_hash_key(), SUBJECT_FIELD)
    # the day's tombstones and quarantine, written once so the parse is not re-run; deleted at the end
    scratch = {name: this.staging("bronze", f"_cdc_{name}") for name in ("tombstones", "quarantine")}
    staged = {"bronze": this.staging("bronze", state.CHANGES), "quarantine": this.staging("quarantine", state.CHANGES)}
    parsed = parsed.persist(StorageLevel.MEMORY_AND_DISK)
    try:
        counts = changelog.count_kinds(parsed)
        unconfigured = sorted(r["source"] for r in parsed.where(
            F.col("reason").startswith("no_primary_key_configured")).select("source").distinct().collect())
        bronze = _write(changelog.to_bronze(parsed), staged["bronze"])
        quarantine = changelog.to_quarantine(parsed)
        tombstones = parsed.where(F.col("kind") == "tombstone").select("table", "key")
        tombstones = _write(tombstones, scratch["tombstones"])
        quarantine = _write(quarantine, scratch["quarantine"])
    finally:
        parsed.unpersist()
    for source in unconfigured:
        log.error("CDC events for table %s were quarantined: it has no primary key configured; add it to "
                  "cdc.yaml (source, primary_key, columns) and replay the day", source)
    gate = validate(bronze, "cdc_changes", {"tables": [t.name for t in cdc.tables]}, this.docs("cdc/changes"),
                    this.fs)
    tables: dict[str, MergedTable] = {}
    per_table = {r["table"]: r["count"] for r in bronze.groupBy("table").count().collect()}
    for table in cdc.tables if gate.success else []:
        merged = merge_table(this, table, bronze.where(F.col("table") == table.name),
                             tombstones.where(F.col("table") == table.name), bool(per_table.get(table.name)),
                             cdc.segment_rows)
        if merged is None:
            log.info("%s: no changes on %s and no pending snapshot; silver unchanged", table.name, day)
        else:
            tables[table.name] = merged
    for merged in tables.values():
        quarantine = quarantine.unionByName(merged.unmatched_tombstones.select(
            F.lit("tombstone_without_delete").alias("reason"), F.lit("tombstone").alias("kind"), "table", "key"),
            allowMissingColumns=True)
    quarantine.write.parquet(staged["quarantine"])
    unmatched = spark.read.parquet(staged["quarantine"]).where(F.col("reason") == "tombstone_without_delete").count()
    counts.update({"quarantined:tombstone_without_delete": unmatched} if unmatched else {})
    report = {
        **this.header(), "inputs": inputs, "counts": dict(sorted(counts.items())),
        "quarantined": sum(v for k, v in counts.items() if k.startswith("quarantined:")),
        "unconfigured_sources": unconfigured, "validation": gate.as_dict(),
        "tables": {name: merged.manifest for name, merged in tables.items()},
    }
    if gate.success and all(merged.ok for merged in tables.values()):
        report.update(status="published", seconds=this.elapsed())
        report_staged = this.file_staging("reports", f"{STAGE}-run.json")
        this.write_json(report_staged, report)
        this.publish([Output(staged["bronze"], lake.partition("bronze", state.CHANGES, day), report),
                      Output(staged["quarantine"], lake.partition("quarantine", state.CHANGES, day)),
                      *[o for table in cdc.tables if table.name in tables
                        for o in table_outputs(lake, table, tables[table.name])],
                      Output(report_staged, lake.report_file(STAGE, day))])
        return report
    staged.update({f"{name}_{kind}": path for name, merged in tables.items()
                   for kind, path in merged.staged.items()})
    report.update(status="rejected", rejected_batch=this.reject("bronze", state.CHANGES, staged, report),
                  seconds=this.elapsed())
    this.write_json(lake.report_file(STAGE, day), report)
    return report


def failures(report: dict[str, Any]) -> list[str]:
    """Every failed expectation of the run, prefixed by the suite (and table)."""
    found = [f"cdc_changes: {f}" for f in report["validation"]["failures"]]
    for name, manifest in report["tables"].items():
        found += [f"{name} {v['suite']}: {f}" for v in manifest["validation"] for f in v["failures"]]
    return found


def summary(report: dict[str, Any]) -> Outcome:
    """What the entry point prints for a date: the counts, a line per table, and the one line if rejected."""
    lines = tuple(f"{name}: {m['counts']['current_rows']} current rows, {m['counts']['history_rows']} versions; "
                  f"events {json.dumps(m['counts']['events'])}" for name, m in report["tables"].items())
    record = {k: report.get(k) for k in ("status", "dt", "run_id", "counts", "unconfigured_sources")}
    if report["status"] != "rejected":
        return Outcome(record, lines)
    why = "; ".join(failures(report))
    return Outcome(record, lines, rejected=f"nothing published for dt={report['dt']}; GX: {why}; "
                                           f"batch kept at {report['rejected_batch']}")
