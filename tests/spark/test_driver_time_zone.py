"""A driver whose clock is not on UTC (a laptop in New York running a backfill with spark-submit) builds the same day
windows as one on UTC. PySpark reads a Python datetime without a zone in the driver's local time, so the windows the
jobs build from dates carry UTC explicitly; before they did, events of the first five hours of a day fell out."""

from __future__ import annotations

import datetime as dt
import time

import pytest
from pyspark.sql import functions as F

from jobs.ab import aggregation, registry
from jobs.als import interactions as ix
from jobs.clickstream import bronze
from tests.spark.test_ab_aggregation import REGISTRY
from tests.spark.test_clickstream_bronze import DAY, demo_day


@pytest.fixture
def driver_in_new_york(monkeypatch):
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    assert time.localtime(0).tm_hour == 19  # the epoch is 19:00 the evening before, there
    yield
    monkeypatch.undo()
    time.tzset()


def test_the_bronze_gate_keeps_the_first_hours_of_the_day(spark, lake, driver_in_new_york):
    demo_day(lake)  # one event at every hour of the day, UTC
    result = bronze.run(spark, lake, DAY, "clickstream")
    assert result["status"] == "published", result["validation"]["failures"]
    assert result["counts"]["bronze"] == 40


def test_experiment_windows_start_and_end_at_midnight_utc(spark, driver_in_new_york):
    experiments = registry.parse(REGISTRY).experiments
    windows = aggregation.experiment_windows(spark, experiments, DAY).select(
        "experiment_id", *[F.date_format(c, "yyyy-MM-dd HH:mm:ss").alias(c) for c in ("window_start", "window_end")])
    assert sorted(tuple(r) for r in windows.collect()) == [
        (e.id, f"{e.start_date} 00:00:00", f"{e.analysis_end(DAY) + dt.timedelta(days=1)} 00:00:00")
        for e in experiments]


def test_the_als_window_and_holdout_start_at_midnight_utc(spark, driver_in_new_york):
    window = ix.DataWindow(dt.date(2026, 11, 14), dt.date(2026, 11, 19), DAY)
    at = ["2026-11-14 01:00:00", "2026-11-19 01:00:00", "2026-11-20 23:00:00", "2026-11-21 01:00:00"]
    rows = spark.createDataFrame([(t,) for t in at], "t string").select(F.to_timestamp("t").alias("event_ts"))
    kept = ix.in_window(rows, window).select(F.date_format("event_ts", "yyyy-MM-dd HH:mm:ss").alias("at"), "holdout")
    assert sorted(tuple(r) for r in kept.collect()) == [(at[0], False), (at[1], True), (at[2], True)]
