"""Every Spark job on a real standalone cluster (a master and two workers on loopback, started with the pyspark
wheel's `spark-class`), submitted by the Airflow operator with `spark_default` pointing at the master and the
project's code shipped as the built artifact: the workers have the pinned packages and nothing of the
repository. The outputs equal local mode's on the same input, row for row, also when the first job's driver is
killed mid-write and its retry loses a worker mid-job; and an unreachable master fails at once."""

from __future__ import annotations

import contextlib
import datetime as dt
import importlib
import json
import math
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
import yaml
from airflow.sdk.exceptions import AirflowException, AirflowFailException
from pipeline_airflow.shared import AIRFLOW
from pipeline_airflow.spark import SparkJobOperator, spark_job
from pyspark.sql.types import FloatType

from demo import cli as demo_cli
from demo.shop import snapshot_options
from jobs.als import settings as als_settings
from jobs.common import runner, storage
from jobs.common.paths import Lake
from tests.mid_write import wait_until_writing
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
    return [
        ("clickstream_bronze", {"--date": FIRST.isoformat(), "--end-date": LAST.isoformat()}),
        ("cdc_snapshot", snapshot_options(lake, LAST.isoformat())),
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


def rows(spark, root: Path, table: Path) -> tuple[list[str], list[list]]:
    """The table's single-precision columns and its rows (run columns aside), sorted by the other columns."""
    frame = spark.read.parquet(str(table))
    keep = sorted(c for c in frame.columns if c not in RUN_COLUMNS)
    single = sorted(f.name for f in frame.schema.fields if isinstance(f.dataType, FloatType) and f.name in keep)
    ordered = [*(c for c in keep if c not in single), *single]
    found = [comparable(row, str(root)) for row in frame.select(ordered).collect()]
    return single, sorted(found, key=lambda row: repr(row[:len(ordered) - len(single)]))


def assert_same_rows(there: tuple[list[str], list[list]], here: tuple[list[str], list[list]], name: str) -> None:
    """Equal rows; a single-precision value (an ALS score: numpy's float32 matrix product, whose last bit depends
    on the block shapes a partition hands it) may differ in its last bits: within 1e-6 of each other."""
    (single, remote), (_, local) = there, here
    assert len(remote) == len(local), name
    width = len(single)
    for theirs, ours in zip(remote, local, strict=True):
        if width:
            assert theirs[:-width] == ours[:-width], name
            assert all(math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-9) if None not in (a, b) else a == b
                       for a, b in zip(theirs[-width:], ours[-width:], strict=True)), (name, theirs, ours)
        else:
            assert theirs == ours, name


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


def kill_the_driver_mid_write(op: SparkJobOperator, root: Path) -> None:
    """SIGKILL to spark-submit (the driver, client mode) and its children once the executors write staged files;
    the task fails, as Airflow sees it."""
    failure: list[BaseException] = []

    def submit() -> None:
        try:
            op.execute({})
        except AirflowException as exc:
            failure.append(exc)

    submitting = threading.Thread(target=submit)
    submitting.start()
    wait_until_writing(root, running=submitting.is_alive)  # the executors are writing
    driver = psutil.Process(op._hook._submit_sp.pid)
    for proc in [*driver.children(recursive=True), driver]:
        proc.kill()
    submitting.join(120)
    assert failure, "the killed submit did not fail the task"


@contextlib.contextmanager
def a_worker_killed_mid_job(cluster: Cluster) -> Iterator[threading.Event]:
    """SIGKILL to one worker (and its executor) once the job's executors run on both; afterwards a new worker takes
    its place, so the next job has two again. The event yielded tells whether the kill happened."""
    killed, done = threading.Event(), threading.Event()

    def kill_once_executors_run() -> None:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and not done.is_set():
            if any(app["cores"] >= 2 for app in json.loads(cluster.status())["activeapps"]):
                time.sleep(3)  # tasks are running on both workers now
                os.killpg(cluster.workers[0].pid, signal.SIGKILL)
                killed.set()
                return
            time.sleep(0.2)

    killer = threading.Thread(target=kill_once_executors_run)
    killer.start()
    try:
        yield killed
    finally:
        done.set()
        killer.join()
        if killed.is_set():
            cluster.workers[0] = cluster.add_worker(0)


def test_every_job_on_the_cluster_equals_local_mode_through_a_killed_driver_and_a_killed_worker(
        cluster, source, tmp_path, local_mode):
    """The nightly's jobs on the cluster and in local mode on copies of one lake: every table equal, row for row.
    The cluster's first job meets both faults: its driver is killed mid-write (nothing may be published), and
    Airflow's retry loses a worker mid-job (the output must still be complete)."""
    local, remote = copy_lake(source, tmp_path / "local"), copy_lake(source, tmp_path / "cluster")
    local_root, remote_root = tmp_path / "local", tmp_path / "cluster"
    als_yaml = mllib_settings(tmp_path / "als.yaml")
    for job, options in steps(local, als_yaml):
        started = time.monotonic()
        run_local(job, options, local)
        print(f"local {job}: {time.monotonic() - started:.1f} s")
    (first, first_options), *rest = steps(remote, als_yaml)
    assert first == "clickstream_bronze"
    kill_the_driver_mid_write(operator(first, first_options, remote, cluster), remote_root)
    assert not list(remote_root.glob("bronze/clickstream/dt=*"))  # nothing half-published
    with a_worker_killed_mid_job(cluster) as killed:
        operator(first, first_options, remote, cluster).execute({})  # Airflow's retry
        killed_while_running = killed.is_set()
    assert killed_while_running, "the retry finished before a worker could be killed"
    for job, options in rest:
        started = time.monotonic()
        operator(job, options, remote, cluster).execute({})
        print(f"cluster {job}: {time.monotonic() - started:.1f} s")
    here, there = tables(local_root), tables(remote_root)
    assert sorted(there) == sorted(here)
    for wanted in ("bronze/clickstream/dt=2026-11-20", "quarantine/cdc_changes", "silver/users_current",
                   "gold/features/user_day/dt=2026-11-20", "models/als/versions/<version>/recommendations"):
        assert any(name.startswith(wanted) for name in here), (wanted, sorted(here))
    for name in sorted(here):
        assert_same_rows(rows(local_mode, remote_root, there[name]), rows(local_mode, local_root, here[name]), name)
    report = Path("reports/ab") / f"dt={LAST}" / "report.json"
    assert (comparable(json.loads((remote_root / report).read_text()), str(remote_root))
            == comparable(json.loads((local_root / report).read_text()), str(local_root)))
    manifest = json.loads(storage.read_bytes(Lake.manifest(remote.partition("bronze", "clickstream", LAST))))
    assert manifest["code_artifact"].startswith("pipeline-jobs-")  # the driver ran the shipped code too
    assert not list(remote_root.rglob("_staging")) and not list(remote_root.rglob("_temporary"))


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
