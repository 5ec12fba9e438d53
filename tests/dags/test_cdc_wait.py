"""The nightly DAG's wait for the CDC merge: the sensor's decision on the date's run.json."""

from __future__ import annotations

import json

import pytest
from airflow.sdk.exceptions import AirflowFailException
from pipeline_airflow import shared
from pipeline_airflow.tasks.cdc import wait_for_cdc

from jobs.cdc import STAGE
from jobs.common import storage
from jobs.common.paths import as_date

DAY = "2026-11-20"


def test_waits_until_published_and_fails_at_once_on_a_rejected_merge(lake, monkeypatch):
    monkeypatch.setattr(shared, "LAKE", lake)
    poke = wait_for_cdc.function
    assert poke(DAY).is_done is False  # not merged yet: keep waiting

    report = {"status": "published", "run_id": "r1", "counts": {"change:u": 3}}
    storage.write_atomic(lake.report_file(STAGE, as_date(DAY)), json.dumps(report).encode())
    done = poke(DAY)
    assert done.is_done and done.xcom_value == {"run_id": "r1", "counts": {"change:u": 3}}

    rejected = {"status": "rejected", "run_id": "r2", "counts": {}, "rejected_batch": "file:///lake/rejected"}
    storage.write_atomic(lake.report_file(STAGE, as_date(DAY)), json.dumps(rejected).encode())
    with pytest.raises(AirflowFailException, match="rejected by validation"):
        poke(DAY)
