"""The job as a user runs it by hand: spark-submit, documented arguments, exit codes."""

from __future__ import annotations

import datetime as dt
import json
import subprocess

from demo import cli as demo_cli
from jobs.common import catalog, storage
from jobs.common.paths import Lake
from tests.airflow_env import REPO

JOB = str(REPO / "jobs" / "clickstream_bronze.py")


def submit(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["spark-submit", "--master", "local[2]", *catalog.submit_args(),
                             "--conf", "spark.ui.enabled=false", JOB, *args],
                          capture_output=True, text=True, cwd=REPO)


def test_help_documents_the_arguments():
    result = submit("--help")
    assert result.returncode == 0, result.stderr[-2000:]
    for flag in ("--date", "--lake-root", "--topic", "--refresh"):
        assert flag in result.stdout


def test_bad_date_is_a_one_line_usage_error():
    result = submit("--date", "20/11/2026")
    assert result.returncode == 2
    # spark-submit's PythonRunner merges the driver's stderr into stdout
    assert "argument --date: expected a date as YYYY-MM-DD, got '20/11/2026'" in result.stdout + result.stderr


def test_spark_submit_builds_a_day(tmp_path):
    lake = Lake((tmp_path / "lake").as_uri())
    demo_cli.main(["--start-date", "2026-11-20", "--events-per-day", "2000", "--users", "200",
                         "--items", "100", "--lake-root", lake.root])
    result = submit("--date", "2026-11-20", "--lake-root", lake.root)
    assert result.returncode == 0, result.stderr[-3000:]
    summary, _ = json.JSONDecoder().raw_decode(result.stdout, result.stdout.index('{\n  "status"'))
    assert summary["status"] == "published" and summary["counts"]["bronze"] > 1_000
    bronze = lake.partition("bronze", "clickstream", dt.date(2026, 11, 20))
    assert storage.list_files(bronze, ".parquet")


def test_without_the_pinned_jars_the_job_fails_with_one_clear_line(tmp_path):
    bare = subprocess.run(["spark-submit", "--master", "local[2]", "--conf", "spark.ui.enabled=false", JOB,
                           "--date", "2026-11-20", "--lake-root", (tmp_path / "lake").as_uri()],
                          capture_output=True, text=True, cwd=REPO)
    assert bare.returncode == 1
    assert ("clickstream_bronze failed: the Iceberg jars are not on Spark's class path: submit with the pinned jars, "
            "`spark-submit $(python -m jobs.common.catalog) ...`") in bare.stdout + bare.stderr


def test_missing_input_fails_with_one_clear_line(tmp_path):
    result = submit("--date", "2026-11-20", "--lake-root", (tmp_path / "empty").as_uri())
    assert result.returncode == 1
    assert "clickstream_bronze failed: no raw files for clickstream around 2026-11-20" in result.stdout + result.stderr


def test_the_migration_command_runs_by_hand_and_finds_nothing_to_copy_in_a_new_lake(tmp_path):
    lake = (tmp_path / "lake").as_uri()  # a lake that does not exist yet, its catalog given as `spark_submit` does
    migrate = subprocess.run(["spark-submit", "--master", "local[2]", *catalog.submit_args(lake, with_catalog=True),
                              "--conf", "spark.ui.enabled=false", str(REPO / "jobs" / "maintenance_migrate.py"),
                              "--lake-root", lake], capture_output=True, text=True, cwd=REPO)
    assert migrate.returncode == 0, migrate.stderr[-3000:]
    summary, _ = json.JSONDecoder().raw_decode(migrate.stdout, migrate.stdout.index('{\n  "status"'))
    assert summary["status"] == "migrated"
    assert {t: v["nights_copied"] for t, v in summary["tables"].items()} == {
        "lake.gold.ab_counts": {}, "lake.gold.ab_diagnostics": {}, "lake.gold.ab_history": {}}
