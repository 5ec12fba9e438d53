"""Shared fixtures: one SparkSession per test process (two with `-n 2`), a fresh lake per test, event builders;
test tiers.

Every test gets the marker of its folder (`unit`, `dags`, `spark`, `integration`, `e2e`), so a tier runs
alone: `make test-fast` is `-m "unit or dags"`. A unit or DAG test that asks for Spark is an error: the
quick tier must stay quick.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from jobs.common import catalog
from jobs.common.paths import Lake
from jobs.ingest.raw_zone import RawRecord

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

REPO = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent
TIERS = ("unit", "dags", "spark", "integration", "e2e")
QUICK = ("unit", "dags")
os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
os.environ.setdefault("PIPELINE_MODE", "demo")  # the tests' lakes are demo lakes (tests of the refusal unset it)
#: JVM options for the tests' short runs on tiny data: the quick-starting JIT (C1 only) and the serial collector.
#: A 5,000-event bronze day by spark-submit: 41.7 -> 25.8 s of CPU, 25.7 -> 22.7 s wall (two test processes share
#: two cores, so CPU is what counts; benchmarks/small_day_overhead.py). Production runs keep the JVM's defaults.
SHORT_RUN_JVM_OPTIONS = "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC"


def class_data_sharing() -> str:
    """JVM options that map Spark's classes from an archive instead of loading them: a small Spark run's JVM
    spends ~4 s of CPU loading classes (10.5 -> 6.4 s for a tiny job). The archive is the classes a short
    representative job (tests/jvm_warmup.py) loaded, dumped at its exit, once per pyspark version in build/;
    a JVM whose class path does not match it ignores it (-Xshare:auto, logging off)."""
    import pyspark

    archive = REPO / "build" / "jvm" / f"spark-{pyspark.__version__}.jsa"
    if not archive.exists():
        archive.parent.mkdir(parents=True, exist_ok=True)
        partial = archive.with_name(f".{archive.name}.{os.getpid()}")
        subprocess.run(["spark-submit", "--conf", "spark.ui.enabled=false", str(TESTS / "jvm_warmup.py")],
                       env={**os.environ, "SPARK_SUBMIT_OPTS": f"{SHORT_RUN_JVM_OPTIONS} "
                            f"-XX:ArchiveClassesAtExit={partial}"}, capture_output=True, timeout=600, check=False)
        if partial.exists():
            os.replace(partial, archive)
    return f" -XX:SharedArchiveFile={archive} -Xlog:disable" if archive.exists() else ""


def pytest_configure(config: pytest.Config) -> None:
    """Every JVM the tests start (spark-submit, pyspark's session) gets the short-run options; test processes
    of pytest-xdist inherit them from the first process, which builds the class archive once."""
    if hasattr(config, "workerinput"):
        return
    quick_tier_only = config.getoption("markexpr") in ("unit or dags", "unit", "dags")  # no JVM to speed up
    sharing = "" if quick_tier_only else class_data_sharing()
    os.environ.setdefault("SPARK_SUBMIT_OPTS", SHORT_RUN_JVM_OPTIONS + sharing)


#: The longest files, run first, longest first (seconds of a fresh-clone run under two processes, 2026-12-04):
#: pytest-xdist hands whole files to whichever process is free, in collection order, so a long file collected
#: late ran alone at the end (test_features.py: a ~2-minute tail with one core idle).
#: (The Celery e2e test third, after the cluster test, made a fresh-clone run slower, 19:49 against 18:58.)
LONGEST_FIRST = ("e2e/test_nightly_dag.py",  # ~430 s
                 "integration/test_spark_cluster.py",  # ~315 s
                 "spark/test_features.py",  # ~195 s
                 "spark/test_iceberg_tables.py",  # ~150 s
                 "integration/test_iceberg_writers.py",  # ~120 s
                 "spark/test_cdc_properties.py",  # ~70 s since in_jvm (~160 s before)
                 "spark/test_cdc_layout.py",  # ~110 s
                 "spark/test_commit_jobs.py", "spark/test_als.py",
                 "integration/test_cdc_snapshot_postgres.py")


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        path = item.path.relative_to(TESTS).as_posix()
        return LONGEST_FIRST.index(path) if path in LONGEST_FIRST else len(LONGEST_FIRST)

    missing = [path for path in LONGEST_FIRST if not (TESTS / path).exists()]
    if missing:
        raise pytest.UsageError(f"LONGEST_FIRST names files that do not exist: {missing}")
    items.sort(key=rank)  # stable: the rest keep their order, and every file its own
    for item in items:
        tier = item.path.relative_to(TESTS).parts[0]
        if tier not in TIERS:
            raise pytest.UsageError(f"{item.nodeid}: tests live in one of the tier folders {TIERS}")
        if tier in QUICK and "spark" in getattr(item, "fixturenames", ()):
            raise pytest.UsageError(f"{item.nodeid}: a {tier} test must not start Spark; move it to tests/spark/")
        item.add_marker(getattr(pytest.mark, tier))


#: The in-process session's settings (the spark-submit'd jobs of the integration and e2e tiers keep pipeline.yaml's).
SESSION_CONF = {
    "spark.sql.session.timeZone": "UTC",
    "spark.ui.enabled": "false",
    "spark.driver.memory": "2g",
    # one session runs every Spark test: keep the status store (plans of every query, also without
    # the UI) small, so the driver heap is there for broadcasts and GX rather than for old plans
    "spark.sql.ui.retainedExecutions": "50",
    "spark.ui.retainedJobs": "100",
    "spark.ui.retainedStages": "100",
}
#: Tiny data in thousands of small queries: expressions interpreted instead of compiled by Janino, no adaptive
#: re-planning, two shuffle partitions (the task slots; still more than one). The CDC property test's merges:
#: JVM CPU 2.0x less (benchmarks/suite_session_settings.py, docs/BENCHMARKS.md). Compiled code and adaptive
#: execution are still tested: every job the integration and e2e tiers spark-submit runs with pipeline.yaml's.
SMALL_QUERY_CONF = {
    "spark.sql.codegen.wholeStage": "false",
    "spark.sql.codegen.factoryMode": "NO_CODEGEN",
    "spark.sql.adaptive.enabled": "false",
    "spark.sql.shuffle.partitions": "2",
}


def in_jvm(frame: DataFrame) -> DataFrame:
    """A frame's rows held by the JVM (a LocalRelation), converted once through Arrow by Spark itself.

    `createDataFrame` of Python rows is an RDD of pickled rows: every query that scans it runs Python worker tasks
    again. Tests that query such a frame many times (a merge scans history and current in several branches, GX runs
    a Spark job per metric) spent more CPU in those workers than in the JVM."""
    return frame.sparkSession.createDataFrame(frame.toArrow(), schema=frame.schema)


@pytest.fixture(scope="session")
def spark() -> Iterator:
    from pyspark.sql import SparkSession

    builder = SparkSession.builder.master("local[2]").appName("tests")
    for key, value in {**SESSION_CONF, **SMALL_QUERY_CONF}.items():
        builder = builder.config(key, value)
    for key, value in catalog.jvm_conf().items():  # Iceberg, the JDBC drivers: as every spark-submit has them
        builder = builder.config(key, value)
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()
    # py4j logs each gateway connection it closes at interpreter exit, after pytest closed the captured stdout that
    # Airflow's log handler (installed by `import airflow`) still writes to: a "Logging error" traceback per process
    logging.getLogger("py4j").setLevel(logging.WARNING)


@pytest.fixture(autouse=True)
def nothing_left_cached(request: pytest.FixtureRequest) -> Iterator[None]:
    """A job or test that persists a frame releases it: one session runs every Spark test (and a backfill runs
    many days in one session), so a frame left cached holds driver and executor memory for the rest of it."""
    yield
    if "spark" not in request.fixturenames:
        return
    session = request.getfixturevalue("spark")
    if not session._jsparkSession.sharedState().cacheManager().isEmpty():
        rdds = session.sparkContext._jsc.getPersistentRDDs()
        names = [str(rdds.get(key).name())[:300] for key in rdds.keySet().toArray()]
        session.catalog.clearCache()
        pytest.fail("the test left cached DataFrames behind (persist without unpersist): " + " | ".join(names))


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """A real S3 API server over HTTP (moto's), started once; boto3 talks to it like to MinIO."""
    import socket

    from moto.server import ThreadedMotoServer

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def lake(tmp_path: Path) -> Lake:
    return Lake((tmp_path / "lake").as_uri())


def event(event_id: str, ts: str = "2026-11-20T10:00:00Z", **overrides: object) -> dict:
    """A valid clickstream event; overrides replace or (with value ...) remove fields."""
    body = {
        "event_id": event_id, "event_type": "click", "event_ts": ts, "user_id": "u1",
        "session_id": "s1", "item_id": "i1", "query": None, "revenue": None, "currency": None,
        "user_agent": "test-agent", "referrer": None, "ip": "203.0.113.77", "consent": True,
        "experiments": None,
    }
    body.update(overrides)
    return {k: v for k, v in body.items() if v is not ...}


def record(offset: int, value: dict | str | bytes | None, kafka_ts: str = "2026-11-20T10:00:01Z",
           partition: int = 0, topic: str = "clickstream") -> RawRecord:
    """A Kafka record as the drain lands it; dict values are JSON-encoded, str/bytes kept as is."""
    if isinstance(value, dict):
        value = json.dumps(value)
    if isinstance(value, str):
        value = value.encode()
    ts_ms = int(dt.datetime.fromisoformat(kafka_ts.replace("Z", "+00:00")).timestamp() * 1000)
    return RawRecord(topic, partition, offset, ts_ms, b"u1", value)
