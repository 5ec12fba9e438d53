"""The clickstream stage's summary of a published day."""

from __future__ import annotations

import json
from typing import Any

from airflow.sdk import task

from pipeline_airflow.shared import LAKE


@task(doc_md="Log where the day's outputs are and their counts (from the partition manifest).")
def summarise_outputs(day: str) -> dict[str, Any]:
    from jobs.common.outputs import partition_summary
    from jobs.common.paths import as_date

    summary = partition_summary(LAKE, "clickstream", as_date(day))
    print(json.dumps(summary, indent=2))
    return summary
