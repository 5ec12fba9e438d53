"""The A/B job's tables on Apache Iceberg: declared, a night replaced in one commit per table, the snapshot ids in
the run's manifest, reruns without duplicates, and one table read by name from Spark, pyiceberg and DuckDB."""

from __future__ import annotations

import datetime as dt
import glob
import json
import os
import shutil
import time
from pathlib import Path

import duckdb
import duckdb_extension_avro
import duckdb_extension_iceberg
import pytest

from demo import cli as demo_cli
from jobs.ab import outputs, registry
from jobs.ab import report as ab_report
from jobs.clickstream import bronze
from jobs.common import catalog, storage, tables
from jobs.common.paths import Lake
from jobs.common.run import Run
from jobs.common.settings import MaintenanceSettings
from jobs.maintenance import tables as maintenance

DAYS = [dt.date(2026, 11, 14), dt.date(2026, 11, 15)]  # the registry's experiments start on the first


@pytest.fixture(scope="module")
def ab_lake(spark, tmp_path_factory) -> Lake:
    lake = Lake((tmp_path_factory.mktemp("ab") / "lake").as_uri())
    assert demo_cli.main(["--start-date", DAYS[0].isoformat(), "--days", str(len(DAYS)), "--events-per-day", "1500",
                          "--users", "300", "--items", "50", "--lake-root", lake.root]) == 0
    for day in DAYS:
        assert bronze.run(spark, lake, day, "clickstream")["status"] == "published"
    return lake


def rows_of(spark, table: str, day: dt.date) -> list[tuple]:
    return sorted((tuple(r) for r in spark.table(table).where(f"report_date = DATE'{day}'").collect()), key=repr)


def manifest(lake: Lake, day: dt.date) -> dict:
    return json.loads(storage.read_bytes(Lake.manifest(lake.partition("reports", "ab", day))))


def duckdb_with_iceberg() -> duckdb.DuckDBPyConnection:
    """DuckDB with its Iceberg extension loaded from the PyPI packages (no download)."""
    connection = duckdb.connect()
    for package in (duckdb_extension_avro, duckdb_extension_iceberg):
        found = glob.glob(os.path.join(os.path.dirname(package.__file__), "extensions", "*", "*.duckdb_extension"))
        connection.execute(f"LOAD '{found[0]}'")
    return connection


def test_a_night_is_one_commit_per_table_named_in_the_manifest_and_a_rerun_replaces_it(spark, ab_lake):
    reg = registry.load()
    first = ab_report.run(spark, ab_lake, DAYS[1], reg)
    assert first["status"] == "published"
    written = manifest(ab_lake, DAYS[1])["tables_written"]
    assert set(written) == {"lake.gold.ab_counts", "lake.gold.ab_diagnostics", "lake.gold.ab_history"}
    for table, snapshot in written.items():
        summary = spark.sql(f"SELECT summary FROM {table}.snapshots WHERE snapshot_id = {snapshot}").first()[0]
        assert summary["run-id"] == first["run_id"]  # which run wrote a snapshot, from the table itself
    history = rows_of(spark, "lake.gold.ab_history", DAYS[1])
    counts = rows_of(spark, "lake.gold.ab_counts", DAYS[1])
    assert len(history) == manifest(ab_lake, DAYS[1])["rows"]["history"] > 0
    assert {r[1] for r in history} == {e.id for e in reg.experiments if e.valid}
    partitions = spark.sql("SELECT partition.report_date FROM lake.gold.ab_history.partitions").collect()
    assert [p[0] for p in partitions] == [DAYS[1]]  # partitioned by the night, as declared

    # a rerun for one experiment: its rows recomputed, the others kept, nothing duplicated; a new commit
    again = ab_report.run(spark, ab_lake, DAYS[1], reg, only=["exp_homepage_aa"])
    assert rows_of(spark, "lake.gold.ab_history", DAYS[1]) == history
    assert rows_of(spark, "lake.gold.ab_counts", DAYS[1]) == counts
    assert again["tables_written"]["lake.gold.ab_history"] != written["lake.gold.ab_history"]
    # time travel: the first night's snapshot still reads as it was
    before = spark.sql(f"SELECT count(*) FROM lake.gold.ab_history VERSION AS OF {written['lake.gold.ab_history']}")
    assert before.first()[0] == len(history)

    # the next night adds its partition; the earlier night is untouched and feeds the trend (history read back)
    ab_report.run(spark, ab_lake, DAYS[0], reg)
    assert rows_of(spark, "lake.gold.ab_history", DAYS[1]) == history
    nights, read_at = outputs.read_history(spark, ab_lake)
    assert set(nights["report_date"]) == {d.isoformat() for d in DAYS}
    # what a run read is named too: the night after the rerun read the history at the rerun's snapshot
    assert manifest(ab_lake, DAYS[0])["tables_read"]["lake.gold.ab_history"] == again["tables_written"][
        "lake.gold.ab_history"] and read_at is not None


def test_spark_pyiceberg_and_duckdb_read_the_same_table_by_name(spark, ab_lake):
    ab_report.run(spark, ab_lake, DAYS[1], registry.load())
    columns = "report_date, experiment_id, metric, variant, users_control, p_value"
    by_spark = sorted((tuple(r) for r in spark.sql(f"SELECT {columns} FROM lake.gold.ab_history").collect()), key=repr)

    table = catalog.pyiceberg_catalog(ab_lake).load_table("gold.ab_history")
    arrow = table.scan(selected_fields=tuple(c.strip() for c in columns.split(","))).to_arrow()
    by_pyiceberg = sorted(zip(*(arrow.column(c.strip()).to_pylist() for c in columns.split(",")), strict=True),
                          key=repr)

    by_duckdb = sorted(duckdb_with_iceberg().execute(
        f"SELECT {columns} FROM iceberg_scan('{table.metadata_location}')").fetchall(), key=repr)
    assert by_spark == by_pyiceberg == by_duckdb
    assert len(by_spark) > 0


def test_a_lake_on_object_storage_needs_a_catalog_database(monkeypatch):
    monkeypatch.delenv("PIPELINE_CATALOG_URI", raising=False)
    with pytest.raises(Exception, match="PIPELINE_CATALOG_URI is not set: a lake on s3a:// needs a catalog database"):
        catalog.properties(Lake("s3a://lake/prod"))


def test_maintenance_compacts_expires_and_removes_a_killed_writes_files(spark, ab_lake):
    reg = registry.load()
    for _ in range(2):  # nights rerun: small files and snapshots pile up
        ab_report.run(spark, ab_lake, DAYS[1], reg)
    expected = {t: rows_of(spark, f"lake.{t}", DAYS[1]) for t in ("gold.ab_history", "gold.ab_counts")}
    table = catalog.pyiceberg_catalog(ab_lake).load_table("gold.ab_history")
    data_dir = Path(table.location().removeprefix("file:").removeprefix("//")) / "data"
    orphan = data_dir / "report_date=2026-11-15" / "00000-killed-write.parquet"  # what a write killed before its
    shutil.copy(next(data_dir.rglob("*.parquet")), orphan)                     # commit leaves: no snapshot has it
    two_days_ago = time.time() - 2 * 86_400
    os.utime(orphan, (two_days_ago, two_days_ago))
    settings = MaintenanceSettings(snapshot_retention_days=0, retain_last_snapshots=1, orphan_file_age_hours=24,
                                   target_file_size_mb=128)

    report = maintenance.run(spark, ab_lake, DAYS[1], settings, only=["gold.ab_history", "gold.ab_counts"])

    history = report["tables"]["gold.ab_history"]
    assert history["before"]["snapshots"] >= 2 and history["after"]["snapshots"] == 1
    assert history["after"]["files"] < history["before"]["files"]  # expired snapshots' files are gone
    assert history["orphan_files_removed"] == 1 and not orphan.exists()
    for name, rows in expected.items():
        assert rows_of(spark, f"lake.{name}", DAYS[1]) == rows  # the same rows, fewer files
    assert json.loads(storage.read_bytes(ab_lake.report_file("maintenance", DAYS[1])))["tables"].keys() == {
        "gold.ab_history", "gold.ab_counts"}
    with pytest.raises(ValueError, match="no such table in the lake's catalog: gold.nope"):
        maintenance.run(spark, ab_lake, DAYS[1], settings, only=["gold.nope"])


def write_legacy_night(lake: Lake, day: dt.date, frames: dict[str, object]) -> None:
    """A night as the previous release published it: Parquet files in `gold/ab/<dir>/dt=D/` with a manifest."""
    for folder, names in (("counts", ("counts.parquet", "diagnostics.parquet")), ("history", ("history.parquet",))):
        partition = Path(lake.partition("gold", f"ab/{folder}", day).removeprefix("file://"))
        partition.mkdir(parents=True)
        for name in names:
            frames[name].to_parquet(partition / name, index=False)
        (partition / "_manifest.json").write_text(json.dumps({"dt": day.isoformat(), "status": "published"}))


def test_the_migration_copies_a_previous_release_lake_once_without_losing_or_duplicating_a_row(spark, ab_lake,
                                                                                             tmp_path):
    reg = registry.load()
    ab_report.run(spark, ab_lake, DAYS[0], reg)
    ab_report.run(spark, ab_lake, DAYS[1], reg)
    source = {day: {"counts.parquet": outputs._read(spark, outputs.COUNTS.qualified, outputs.COLUMNS, day),
                    "diagnostics.parquet": outputs._read(spark, outputs.DIAGNOSTICS.qualified,
                                                         outputs.DIAGNOSTIC_COLUMNS, day),
                    "history.parquet": outputs._read(spark, outputs.HISTORY.qualified, outputs.HISTORY_COLUMNS, day)
                    .assign(report_date=day.isoformat())}
              for day in DAYS}
    old = Lake((tmp_path / "old").as_uri())
    for day, frames in source.items():
        write_legacy_night(old, day, frames)
    unpublished = Path(old.partition("gold", "ab/history", dt.date(2026, 11, 16)).removeprefix("file://"))
    unpublished.mkdir(parents=True)  # a partition whose publish never finished: no manifest, not a night
    source[DAYS[0]]["history.parquet"].to_parquet(unpublished / "history.parquet", index=False)

    names = ("gold.ab_counts", "gold.ab_diagnostics", "gold.ab_history")
    expected = {t: [rows_of(spark, f"lake.{t}", d) for d in DAYS] for t in names}  # the source lake's rows

    report = outputs.migrate_legacy(spark, old, "migration-1")
    migrated = {t: [rows_of(spark, f"lake.{t}", d) for d in DAYS] for t in names}  # now the old lake's catalog
    assert migrated == expected and sum(len(r) for r in migrated["gold.ab_history"]) > 0
    assert {r[0] for r in spark.sql("SELECT DISTINCT report_date FROM lake.gold.ab_history").collect()} == set(DAYS)
    assert sorted(report["lake.gold.ab_history"]["nights_copied"]) == [d.isoformat() for d in DAYS]

    snapshots = spark.sql("SELECT count(*) FROM lake.gold.ab_history.snapshots").first()[0]
    again = outputs.migrate_legacy(spark, old, "migration-2")  # a rerun copies nothing: no commit, no duplicate
    assert again["lake.gold.ab_history"]["nights_copied"] == {}
    assert spark.sql("SELECT count(*) FROM lake.gold.ab_history.snapshots").first()[0] == snapshots
    assert {t: [rows_of(spark, f"lake.{t}", d) for d in DAYS] for t in names} == migrated


class Crash(Exception):
    """Stands for the process dying between two commits: raised out of the job, nothing tidied up."""


def night(spark, lake: Lake, day: dt.date) -> dict[str, object]:
    found = {t: rows_of(spark, f"lake.{t}", day) for t in ("gold.ab_counts", "gold.ab_diagnostics", "gold.ab_history")}
    found["report.json"] = storage.read_bytes(lake.report_file("ab", day, "report.json"))
    return found


@pytest.fixture(scope="module")
def uninterrupted(spark, ab_lake) -> dict[str, object]:
    """The second night as an uninterrupted run leaves it (the first night published before it)."""
    for day in DAYS:
        ab_report.run(spark, ab_lake, day, registry.load())
    return night(spark, ab_lake, DAYS[1])


@pytest.mark.parametrize("commits_before_the_crash", [0, 1, 2, 3])  # before each table commit, before the report
def test_a_run_killed_between_its_commits_then_retried_equals_an_uninterrupted_run(spark, ab_lake, monkeypatch,
                                                                                 uninterrupted,
                                                                                 commits_before_the_crash):
    reg = registry.load()
    real_replace, commits = tables.replace_where, {"n": 0}

    def dying(*args, **kwargs):
        if commits["n"] == commits_before_the_crash:
            raise Crash
        commits["n"] += 1
        return real_replace(*args, **kwargs)

    def dying_publish(this, outputs_):
        raise Crash  # every table committed, the report not yet swapped in

    monkeypatch.setattr(tables, "replace_where", dying)
    monkeypatch.setattr(Run, "publish", dying_publish)
    with pytest.raises(Crash):
        ab_report.run(spark, ab_lake, DAYS[1], reg, only=["exp_homepage_aa"])
    monkeypatch.undo()

    ab_report.run(spark, ab_lake, DAYS[1], reg, only=["exp_homepage_aa"])  # Airflow's retry of the same task
    assert night(spark, ab_lake, DAYS[1]) == uninterrupted
    root = Path(ab_lake.root.removeprefix("file://"))
    assert not list(root.rglob("_staging")) and not list(root.glob("_commits/*/*.json"))
