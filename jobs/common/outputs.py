"""What a day's runs left, read from manifests and run reports without Spark (for the DAGs and the demo)."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from jobs.common import storage
from jobs.common.paths import Lake


def partition_summary(lake: Lake, table: str, day: dt.date) -> dict[str, Any]:
    """Paths of the bronze and quarantine partitions, their manifest, Data Docs and counts."""
    bronze = lake.partition("bronze", table, day)
    manifest = json.loads(storage.read_bytes(Lake.manifest(bronze)))
    return {
        "bronze": bronze,
        "quarantine": lake.partition("quarantine", table, day),
        "manifest": Lake.manifest(bronze),
        "data_docs": manifest["validation"]["data_docs"],
        "counts": manifest["counts"],
    }


def read_run_report(lake: Lake, stage: str, day: dt.date) -> dict[str, Any] | None:
    """`reports/<stage>/dt=D/run.json` (None: no run for the date yet)."""
    try:
        return json.loads(storage.read_bytes(lake.report_file(stage, day)))
    except FileNotFoundError:
        return None
