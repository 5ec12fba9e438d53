"""Retention: raw/ and quarantine keep records only so long (`privacy.yaml`), then their directories go.

raw/ holds the exact bytes of every record, consent or not, so it is the lake's restricted area: its
Kafka-date directories older than `raw_days` are deleted (a rebuild of an older day is then impossible:
keep `raw_days` above the backfill horizon). Quarantine partitions and rejected batches older than
`quarantine_days` are deleted under their writers' lock. No Spark: listing and deleting directories.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from typing import Any

from jobs.common import commit, config, storage
from jobs.common.paths import Lake
from jobs.common.runner import new_run_id
from jobs.privacy import STAGE
from jobs.privacy.settings import PrivacySettings, directories

log = logging.getLogger(__name__)
JOB = "privacy_retention"


def _dated(directory: str, key: str) -> dt.date | None:
    name = directory.rsplit("/", 1)[-1]
    if not name.startswith(f"{key}="):
        return None
    try:
        return dt.date.fromisoformat(name.split("=", 1)[1])
    except ValueError:
        return None


def expired_raw(lake: Lake, before: dt.date) -> list[str]:
    """raw/<topic>/kafka_date=K directories with K before `before` (exports under raw/_exports too)."""
    return [day for topic in storage.children(lake.zone("raw")) for day in storage.children(topic)
            if (_dated(day, "kafka_date") or dt.date.max) < before]


def expired_quarantine(lake: Lake, settings: PrivacySettings, before: dt.date) -> list[tuple[str, str]]:
    """(partition, lock group) of quarantine partitions and rejected batches dated before `before`."""
    found = []
    for table in settings.tables:
        if table.path.startswith("quarantine/") and table.partitions == "dt":
            found += [(partition, group) for partition, group in directories(lake, table)
                      if (_dated(partition, "dt") or dt.date.max) < before]
    rejected = f"{lake.zone('quarantine')}/_rejected_batches"
    for zone in storage.children(rejected):
        for table in storage.children(zone):
            found += [(d, f"{STAGE}/rejected") for d in storage.children(table)
                      if (_dated(d, "dt") or dt.date.max) < before]
    return found


def run(lake: Lake, day: dt.date, settings: PrivacySettings, run_id: str | None = None) -> dict[str, Any]:
    run_id = run_id or new_run_id()
    raw = expired_raw(lake, day - dt.timedelta(days=settings.raw_days))
    for directory in raw:
        storage.delete(directory)
    quarantine = expired_quarantine(lake, settings, day - dt.timedelta(days=settings.quarantine_days))
    for directory, group in quarantine:
        with commit.transaction(lake, group, run_id):
            storage.delete(directory)
    report = {"status": "done", "dt": day.isoformat(), "run_id": run_id, "job": JOB,
              **config.code_identity(), "raw_days": settings.raw_days,
              "quarantine_days": settings.quarantine_days,
              "deleted": {"raw": [d[len(lake.root) + 1:] for d in raw],
                          "quarantine": [d[len(lake.root) + 1:] for d, _ in quarantine]}}
    storage.write_atomic(lake.report_file(STAGE, day, f"retention-{run_id}.json"),
                         json.dumps(report, indent=2).encode())
    log.info("retention: %d raw and %d quarantine directories deleted", len(raw), len(quarantine))
    return report
