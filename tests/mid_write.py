"""The moment to kill a job to test a crash mid-write: its staged Parquet files exist, nothing is published yet.

Used by tests/integration/test_crash_recovery.py (a local spark-submit) and test_spark_cluster.py (a driver on
the cluster)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path


def staged_parquet(root: Path) -> list[Path]:
    return [p for p in root.rglob("*.parquet") if "_staging" in p.parts]


def wait_until_writing(root: Path, running: Callable[[], bool], seconds: float = 300) -> None:
    """Return once a job writing under `root` has staged part files; fail if it ends first or never writes."""
    deadline = time.monotonic() + seconds
    while not staged_parquet(root):
        assert running(), "the job finished before it could be killed"
        assert time.monotonic() < deadline, "the job never started writing"
        time.sleep(0.05)
