import datetime as dt

import pytest
from pipeline_airflow.dates import run_date_for as resolve_run_date

from jobs.common.paths import Lake, as_date
from jobs.common.settings import RowCountGate


def test_lake_paths_are_uri_joins():
    lake = Lake("s3a://bucket/lake/")
    day = dt.date(2026, 11, 20)
    assert lake.partition("bronze", "clickstream", day) == "s3a://bucket/lake/bronze/clickstream/dt=2026-11-20"
    assert lake.raw_file("clickstream", day, 3, 5, 17) == (
        "s3a://bucket/lake/raw/clickstream/kafka_date=2026-11-20/partition=3/"
        "clickstream-3-00000000000000000005-00000000000000000017.jsonl")
    assert "/_staging/" in lake.staging("bronze", "clickstream", day, "r1")
    assert Lake.manifest("file:///l/bronze/t/dt=2026-11-20").endswith("/dt=2026-11-20/_manifest.json")


def test_lake_root_must_be_a_uri():
    with pytest.raises(ValueError, match="must be a URI"):
        Lake("/data/lake")


def test_as_date_rejects_garbage_with_a_clear_message():
    assert as_date("2026-11-20") == dt.date(2026, 11, 20)
    with pytest.raises(ValueError, match="YYYY-MM-DD"):
        as_date("20/11/2026")


def test_nightly_run_processes_the_day_before_its_logical_date():
    logical = dt.datetime(2026, 11, 21, 2, 0, tzinfo=dt.UTC)
    assert resolve_run_date(None, logical, logical) == "2026-11-20"


def test_manual_run_without_logical_date_falls_back_to_run_after():
    run_after = dt.datetime(2026, 11, 23, 9, 30, tzinfo=dt.UTC)
    assert resolve_run_date(None, None, run_after) == "2026-11-22"


def test_run_date_param_wins_and_is_validated():
    now = dt.datetime(2026, 11, 23, tzinfo=dt.UTC)
    assert resolve_run_date("2026-10-01", now, now) == "2026-10-01"
    with pytest.raises(ValueError, match="run_date must be YYYY-MM-DD"):
        resolve_run_date("yesterday", now, now)


def test_row_count_bounds_follow_history_median():
    assert RowCountGate(7, 0.5, 2.0).bounds([]) == (1, None)
    assert RowCountGate(7, 0.5, 2.0).bounds([100, 120, 80]) == (50, 201)


def test_date_range_for_backfills():
    from jobs.common.paths import date_range

    assert date_range(dt.date(2026, 11, 19)) == [dt.date(2026, 11, 19)]
    assert date_range(dt.date(2026, 11, 19), dt.date(2026, 11, 21)) == [
        dt.date(2026, 11, 19), dt.date(2026, 11, 20), dt.date(2026, 11, 21)]
    with pytest.raises(ValueError, match="end date 2026-11-18 is before start date 2026-11-19"):
        date_range(dt.date(2026, 11, 19), dt.date(2026, 11, 18))
