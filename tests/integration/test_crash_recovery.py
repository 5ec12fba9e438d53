"""A real spark-submit killed with SIGKILL in the middle of writing, then run again: the lake ends exactly as
after an uninterrupted run, with no staging left behind (Spark's _temporary files included)."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import signal
import subprocess
from pathlib import Path

from demo import cli as demo_cli
from jobs.common import catalog
from jobs.common.paths import Lake
from tests.airflow_env import REPO
from tests.mid_write import wait_until_writing

DAY = dt.date(2026, 11, 20)
JOB = str(REPO / "jobs" / "clickstream_bronze.py")


def submit(lake: Lake, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(["spark-submit", "--master", "local[2]", *catalog.submit_args(),
                             "--conf", "spark.ui.enabled=false", JOB,
                             "--date", DAY.isoformat(), "--lake-root", lake.root, *extra],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=REPO, start_new_session=True)


def journals(root: Path) -> list[dict]:
    found = []
    for path in root.glob("_commits/*/*.json"):
        try:
            found.append(json.loads(path.read_text()))
        except (OSError, json.JSONDecodeError):  # being replaced right now
            pass
    return found


def rows(spark, lake: Lake) -> list[tuple]:
    """Bronze then quarantine rows, with the lake's own root (in the quarantine's source file) left out."""
    root = lake.root.removeprefix("file://")

    def relative(row) -> tuple:
        return tuple(v.replace(root, "<lake>") if isinstance(v, str) else v for v in row)

    bronze = spark.read.parquet(lake.partition("bronze", "clickstream", DAY))
    quarantine = spark.read.parquet(lake.partition("quarantine", "clickstream", DAY))
    return sorted(map(relative, bronze.collect())) + sorted(map(relative, quarantine.collect()))


def test_spark_submit_killed_mid_write_then_rerun_equals_an_uninterrupted_run(tmp_path, spark):
    source = Lake((tmp_path / "source").as_uri())
    assert demo_cli.main(["--start-date", DAY.isoformat(), "--days", "1", "--events-per-day", "5000", "--users", "300",
                          "--items", "100", "--lake-root", source.root]) == 0
    clean_root, killed_root = tmp_path / "clean", tmp_path / "killed"
    for root in (clean_root, killed_root):
        shutil.copytree(tmp_path / "source", root)
    clean, killed = Lake(clean_root.as_uri()), Lake(killed_root.as_uri())
    assert submit(clean).wait(600) == 0

    job = submit(killed)
    wait_until_writing(killed_root, running=lambda: job.poll() is None)  # Spark is writing the day's part files
    os.killpg(job.pid, signal.SIGKILL)
    job.wait(60)
    assert any(j["state"] == "staging" for j in journals(killed_root))  # killed inside the commit
    assert not (killed_root / "bronze" / "clickstream" / f"dt={DAY}").exists()  # nothing half-published

    assert submit(killed).wait(600) == 0  # the retry
    assert rows(spark, killed) == rows(spark, clean)
    assert not list(killed_root.rglob("_staging")) and not list(killed_root.rglob("_temporary"))
    assert journals(killed_root) == []
