"""Every Spark job on a real standalone cluster (a master and two workers on loopback, started with the pyspark
wheel's `spark-class`), submitted by the Airflow operator with `spark_default` pointing at the master and the
project's code shipped as the built artifact: the workers have the pinned packages and nothing of the
repository. The outputs equal local mode's on the same input, row for row; faults: the master unreachable,
a worker killed mid-job, a driver killed mid-write and retried."""

from __future__ import annotations

import datetime as dt
import importlib
import json
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

import psutil
import pytest
import yaml
from airflow.sdk.exceptions import AirflowException, AirflowFailException
from pipeline_airflow.shared import AIRFLOW
from pipeline_airflow.spark import SparkJobOperator, spark_job

from demo import cli as demo_cli
from demo.shop import snapshot_params
from jobs.als import settings as als_settings
from jobs.common import runner, storage
from jobs.common.paths import Lake
from tests.spark_cluster import Cluster, free_port

FIRST, LAST = dt.date(2026, 11, 17), dt.date(2026, 11, 20)  # ALS holds out the last days: it needs 4
#: Parquet columns that name a run, not data: equal outputs may differ only there.
RUN_COLUMNS = {"_run_id", "run_id", "_commit_id", "commit_id", "_ingested_at", "_merged_at", "source_file",
               "model_version"}


def mllib_settings(where: Path) -> Path:
    """als.yaml with `engine: spark`: the demo's small split would otherwise be trained on the driver by `implicit`,
    and this test is about the executors running MLlib."""
    raw = yaml.safe_load(als_settings.default_path().read_text())
    raw["training"]["engine"] = "spark"
    where.write_text(yaml.safe_dump(raw))
    return where


def steps(lake: Lake, als_yaml: Path) -> list[tuple[str, dict[str, str]]]:
    """The nightly's jobs in the demo's order, on one lake: bronze, CDC onboarding and merge, report, ALS, features."""
    snapshot = snapshot_params(lake, LAST.isoformat())
    return [
        ("clickstream_bronze", {"--date": FIRST.isoformat(), "--end-date": LAST.isoformat()}),
        ("cdc_snapshot", {"--tables": ",".join(snapshot["snapshot_tables"]), "--dump": snapshot["snapshot_dump"],
                          "--watermark-lsn": snapshot["snapshot_watermark_lsn"],
                          "--taken-at": snapshot["snapshot_taken_at"]}),
        ("cdc_merge", {"--date": LAST.isoformat()}),
        ("ab_report", {"--date": LAST.isoformat()}),
        ("als_train", {"--date": LAST.isoformat(), "--settings": str(als_yaml)}),
        ("features_daily", {"--date": LAST.isoformat()}),
    ]


def operator(job: str, options: dict[str, str], lake: Lake, cluster: Cluster) -> SparkJobOperator:
    op = spark_job(job, doc_md="", options={**options, "--lake-root": lake.root}, retries=0)
    op.conf = {**op.conf, **cluster.conf(), "spark.ui.enabled": "false",  # executors: the tests' JVM options
               "spark.executor.extraJavaOptions": os.environ.get("SPARK_SUBMIT_OPTS", "")}
    op.application_args = [a for flag, value in op.options.items() for a in (flag, value)]
    return op


@pytest.fixture
def local_mode(spark, monkeypatch):
    """Jobs run in-process on the tests' local session (`local[2]`), which they must not stop at their end."""
    monkeypatch.setattr(runner.Context, "stop", lambda self: None)
    return spark


def run_local(job: str, options: dict[str, str], lake: Lake) -> None:
    args = [a for flag, value in {**options, "--lake-root": lake.root}.items() for a in (flag, value)]
    assert importlib.import_module(f"jobs.{job}").main(args) == 0, job


def tables(root: Path) -> dict[str, Path]:
    """Every directory of Parquet files in a lake (staging, trash and journals aside), by its path with the
    ALS version id (which ends with the writing commit's id) replaced by `<version>`."""
    found = {p.parent for p in root.rglob("*.parquet") if not {"_staging", "_trash", "_commits"} & set(p.parts)}
    return {re.sub(r"versions/[^/]+", "versions/<version>", str(p.relative_to(root))): p for p in found}


def comparable(value, root: str):
    """A value as two correct runs agree on it: floats to 9 significant digits (a sum's last bits depend on how
    the rows were split into partitions), the lake's path replaced."""
    if isinstance(value, float):
        return float(f"{value:.9g}")
    if isinstance(value, str):
        return value.replace(root, "<lake>")
    if isinstance(value, (list, tuple)):  # a Row or an array column
        return [comparable(v, root) for v in value]
    if isinstance(value, dict):
        return {k: comparable(v, root) for k, v in value.items()}
    return value


def rows(spark, root: Path, table: Path) -> list[tuple]:
    frame = spark.read.parquet(str(table))
    keep = sorted(c for c in frame.columns if c not in RUN_COLUMNS)
    return sorted((comparable(row, str(root)) for row in frame.select(keep).collect()), key=repr)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory) -> Cluster:
    started = Cluster(tmp_path_factory.mktemp("spark-cluster")).start(workers=2)
    before = os.environ.get("AIRFLOW_CONN_SPARK_DEFAULT")
    os.environ["AIRFLOW_CONN_SPARK_DEFAULT"] = json.dumps({"conn_type": "spark", "host": "spark://127.0.0.1",
                                                          "port": started.port})
    yield started
    started.stop()
    if before is None:  # the next test file of this process must not submit to a stopped master
        os.environ.pop("AIRFLOW_CONN_SPARK_DEFAULT")
    else:
        os.environ["AIRFLOW_CONN_SPARK_DEFAULT"] = before


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("source") / "lake"
    assert demo_cli.main(["--start-date", FIRST.isoformat(), "--days", str((LAST - FIRST).days + 1),
                          "--events-per-day", "1500", "--users", "400", "--items", "120",
                          "--oltp-from", LAST.isoformat(), "--lake-root", root.as_uri()]) == 0
    return root


def copy_lake(source: Path, to: Path) -> Lake:
    shutil.copytree(source, to)
    return Lake(to.as_uri())


def test_the_executors_python_has_the_packages_but_not_the_project(cluster, tmp_path):
    probe = [cluster.python, "-c", "import pyspark, pandas, numpy, pyarrow, scipy; import jobs"]
    result = subprocess.run(probe, capture_output=True, text=True, cwd=tmp_path, env={"PATH": "/usr/bin:/bin"})
    assert "No module named 'jobs'" in result.stderr, result.stderr


def test_every_job_on_the_cluster_equals_local_mode(cluster, source, tmp_path, local_mode):
    local, remote = copy_lake(source, tmp_path / "local"), copy_lake(source, tmp_path / "cluster")
    als_yaml = mllib_settings(tmp_path / "als.yaml")
    for job, options in steps(local, als_yaml):
        started = time.monotonic()
        run_local(job, options, local)
        print(f"local {job}: {time.monotonic() - started:.1f} s")
    for job, options in steps(remote, als_yaml):
        started = time.monotonic()
        operator(job, options, remote, cluster).execute({})
        print(f"cluster {job}: {time.monotonic() - started:.1f} s")
    local_root, remote_root = tmp_path / "local", tmp_path / "cluster"
    here, there = tables(local_root), tables(remote_root)
    assert sorted(there) == sorted(here)
    for wanted in ("bronze/clickstream/dt=2026-11-20", "quarantine/cdc_changes", "silver/users_current",
                   "gold/features/user_day/dt=2026-11-20", "models/als/versions/<version>/recommendations"):
        assert any(name.startswith(wanted) for name in here), (wanted, sorted(here))
    for name in sorted(here):
        assert rows(local_mode, remote_root, there[name]) == rows(local_mode, local_root, here[name]), name
    report = Path("reports/ab") / f"dt={LAST}" / "report.json"
    assert (comparable(json.loads((remote_root / report).read_text()), str(remote_root))
            == comparable(json.loads((local_root / report).read_text()), str(local_root)))
    manifest = json.loads(storage.read_bytes(Lake.manifest(remote.partition("bronze", "clickstream", LAST))))
    assert manifest["code_artifact"].startswith("pipeline-jobs-")  # the driver ran the shipped code too


def test_an_unreachable_master_fails_at_once_with_a_clear_message(cluster, source, tmp_path, monkeypatch):
    port = free_port()  # nothing listens there
    monkeypatch.setenv("AIRFLOW_CONN_SPARK_DEFAULT",
                       json.dumps({"conn_type": "spark", "host": "spark://127.0.0.1", "port": port}))
    lake = copy_lake(source, tmp_path / "lake")
    op = operator("clickstream_bronze", {"--date": LAST.isoformat()}, lake, cluster)
    started = time.monotonic()
    with pytest.raises(AirflowException, match=rf"Spark master spark://127\.0\.0\.1:{port} is unreachable") as error:
        op.execute({})
    assert time.monotonic() - started < 30  # spark-submit alone gives up after a minute of INFO lines
    assert not isinstance(error.value, AirflowFailException) and AIRFLOW.retries >= 1  # so Airflow retries it


def test_a_worker_killed_mid_job_is_replaced_and_the_output_is_complete(cluster, source, tmp_path,
                                                                        local_mode):
    local, remote = copy_lake(source, tmp_path / "local"), copy_lake(source, tmp_path / "cluster")
    options = {"--date": FIRST.isoformat(), "--end-date": LAST.isoformat()}
    run_local("clickstream_bronze", options, local)
    killed = threading.Event()

    def kill_a_worker_once_executors_run() -> None:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and not killed.is_set():
            status = json.loads(cluster.status())
            if any(app["cores"] >= 2 for app in status["activeapps"]):
                time.sleep(3)  # tasks are running on both workers now
                os.killpg(cluster.workers[0].pid, signal.SIGKILL)
                killed.set()
                return
            time.sleep(0.2)

    killer = threading.Thread(target=kill_a_worker_once_executors_run)
    killer.start()
    operator("clickstream_bronze", options, remote, cluster).execute({})
    killer.join()
    assert killed.is_set(), "the job finished before a worker could be killed"
    cluster.workers[0] = cluster.add_worker(0)  # later tests get their two workers back
    for day in (FIRST, LAST):
        table = Path("bronze/clickstream") / f"dt={day}"
        assert rows(local_mode, tmp_path / "cluster", tmp_path / "cluster" / table) == \
            rows(local_mode, tmp_path / "local", tmp_path / "local" / table)


def test_a_driver_killed_mid_write_then_retried_leaves_no_partial_output(cluster, source, tmp_path,
                                                                         local_mode):
    """SIGKILL to spark-submit (the driver, client mode) while the executors write the day's files; Airflow's
    retry is a second execute: the lake ends as after one clean run, with no staging or Spark temp files."""
    local, remote = copy_lake(source, tmp_path / "local"), copy_lake(source, tmp_path / "cluster")
    options = {"--date": LAST.isoformat()}
    run_local("clickstream_bronze", options, local)
    first = operator("clickstream_bronze", options, remote, cluster)
    failure: list[BaseException] = []

    def submit() -> None:
        try:
            first.execute({})
        except AirflowException as exc:
            failure.append(exc)

    runner = threading.Thread(target=submit)
    runner.start()
    deadline = time.monotonic() + 300
    root = tmp_path / "cluster"
    while not [p for p in root.rglob("*.parquet") if "_staging" in p.parts]:  # the executors are writing
        assert runner.is_alive(), "the job finished before it could be killed"
        assert time.monotonic() < deadline, "the job never started writing"
        time.sleep(0.05)
    driver = psutil.Process(first._hook._submit_sp.pid)
    for proc in [*driver.children(recursive=True), driver]:
        proc.kill()
    runner.join(120)
    assert failure, "the killed submit did not fail the task"
    assert not (root / "bronze" / "clickstream" / f"dt={LAST}").exists()  # nothing half-published

    operator("clickstream_bronze", options, remote, cluster).execute({})  # the retry
    for table in (Path("bronze/clickstream") / f"dt={LAST}", Path("quarantine/clickstream") / f"dt={LAST}"):
        assert rows(local_mode, root, root / table) == \
            rows(local_mode, tmp_path / "local", tmp_path / "local" / table), table
    assert not list(root.rglob("_staging")) and not list(root.rglob("_temporary"))
