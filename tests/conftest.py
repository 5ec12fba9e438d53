"""Shared fixtures: one SparkSession for the whole run, a fresh lake per test, event builders."""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from jobs.common import config
from jobs.common.paths import Lake
from jobs.common.raw_zone import RawRecord

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
os.environ.setdefault("PYSPARK_PYTHON", sys.executable)


@pytest.fixture(scope="session")
def spark() -> Iterator:
    from pyspark.sql import SparkSession

    session = (
        SparkSession.builder.master("local[2]").appName("tests")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.shuffle.partitions", "4")
        .config("spark.ui.enabled", "false")
        .config("spark.driver.memory", "3g")
        # one session runs every Spark test: keep the status store (plans of every query, also without
        # the UI) small, so the driver heap is there for broadcasts and GX rather than for old plans
        .config("spark.sql.ui.retainedExecutions", "50")
        .config("spark.ui.retainedJobs", "100")
        .config("spark.ui.retainedStages", "100")
        .config("spark.jars", config.jdbc_driver_jar())  # PostgreSQL JDBC for the snapshot tests
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


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
