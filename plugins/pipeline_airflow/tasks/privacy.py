"""The privacy stage's housekeeping: retention of raw/ and quarantine (in-process: listing and deleting)."""

from __future__ import annotations

import logging
from typing import Any

from airflow.sdk import task

from pipeline_airflow.shared import LAKE

log = logging.getLogger(__name__)


@task(doc_md="""
Delete what is past its retention (`privacy.yaml`): raw/ directories older than `raw_days` (the exact
bytes of every record, consent or not), quarantine partitions and rejected batches older than
`quarantine_days`. The report lists what went: `reports/privacy/dt=D/retention-<run>.json`.
""")
def apply_retention(day: str) -> dict[str, Any]:
    from jobs.common.paths import as_date
    from jobs.privacy import retention, settings

    report = retention.run(LAKE, as_date(day), settings.load())
    deleted = {k: len(v) for k, v in report["deleted"].items()}
    log.info("retention deleted %s", deleted)
    return deleted
