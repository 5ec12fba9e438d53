"""Where a day's outputs are, read from the published partition's manifest (no Spark needed)."""

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
