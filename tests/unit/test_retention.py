"""Retention on a real local lake: raw/ and quarantine directories past their days go, the rest stays."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

from jobs.common import storage
from jobs.common.paths import Lake
from jobs.privacy import retention
from jobs.privacy import settings as privacy_settings

DAY = dt.date(2026, 11, 30)


def touch(lake: Lake, relative: str) -> None:
    storage.write_atomic(f"{lake.root}/{relative}/part-0", b"x")


def test_raw_quarantine_and_rejected_batches_past_their_days_are_deleted(tmp_path):
    lake = Lake((tmp_path / "lake").as_uri())
    settings = privacy_settings.load()  # raw_days 14, quarantine_days 30
    for relative in ("raw/clickstream/kafka_date=2026-11-15", "raw/clickstream/kafka_date=2026-11-16",
                     "raw/cdc.public.users/kafka_date=2026-11-01", "raw/_exports/oltp-2026-11-01",
                     "quarantine/clickstream/dt=2026-10-30", "quarantine/clickstream/dt=2026-10-31",
                     "quarantine/cdc_changes/dt=2026-10-01",
                     "quarantine/_rejected_batches/bronze/clickstream/dt=2026-10-29/run_id=r1",
                     "bronze/clickstream/dt=2026-10-01"):
        touch(lake, relative)
    report = retention.run(lake, DAY, settings)
    assert sorted(report["deleted"]["raw"]) == ["raw/cdc.public.users/kafka_date=2026-11-01",
                                                "raw/clickstream/kafka_date=2026-11-15"]
    assert sorted(report["deleted"]["quarantine"]) == [
        "quarantine/_rejected_batches/bronze/clickstream/dt=2026-10-29", "quarantine/cdc_changes/dt=2026-10-01",
        "quarantine/clickstream/dt=2026-10-30"]
    left = sorted(str(p.relative_to(tmp_path / "lake").parent) for p in (tmp_path / "lake").rglob("part-0"))
    assert left == ["bronze/clickstream/dt=2026-10-01", "quarantine/clickstream/dt=2026-10-31",
                    "raw/_exports/oltp-2026-11-01", "raw/clickstream/kafka_date=2026-11-16"]
    written = json.loads(Path(storage.list_files(lake.partition("reports", "privacy", DAY), ".json")[0]
                              .removeprefix("file://")).read_text())
    assert written["deleted"] == report["deleted"]
