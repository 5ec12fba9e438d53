"""What a user reads in the UI's task logs and what a run does with its conf: summaries through logging (the main
log, not the collapsed post-execute group), a job's ERROR lines as errors, misspelt params refused, and a
scheduled run without data skipped rather than failed or waiting, and so is publishing without a reports bucket."""

from __future__ import annotations

import json
import logging
from types import SimpleNamespace

import pytest
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException
from pipeline_airflow import shared
from pipeline_airflow.params import refuse_unknown, unknown
from pipeline_airflow.spark import LevelledLog, line_level
from pipeline_airflow.tasks import clickstream
from pipeline_airflow.tasks.ab import publish_ab_report
from pipeline_airflow.tasks.cdc import summarise_cdc

from jobs.cdc import STAGE
from jobs.common import storage
from jobs.common.paths import as_date

DAY = "2026-11-20"


@pytest.mark.parametrize(("line", "level"), [
    ("2026-11-20 02:00:01,234 ERROR jobs.runner: clickstream_bronze failed: boom", "error"),
    ("2026-11-20 02:00:01,234 WARNING jobs.features.daily: late input", "warning"),
    ("2026-11-20 02:00:01,234 INFO jobs.runner: published", "info"),
    ("25/11/20 02:00:01 ERROR Executor: Exception in task 0.0", "error"),
    ("25/11/20 02:00:01 WARN TaskSetManager: Lost task 1.0", "warning"),
    ("25/11/20 02:00:01 INFO SparkContext: Running Spark version 4.1.3", "info"),
    ("cdc_merge failed: no raw files for cdc.public.users around 2026-11-20", "error"),
    ('{"status": "published", "note": "ERROR in a value is not a log level"}', "info"),
])
def test_each_spark_submit_line_keeps_its_writers_level(line, level):
    assert line_level(line) == level


def test_the_hook_logger_routes_its_info_calls_by_the_lines_level():
    calls = []
    fake = SimpleNamespace(**{name: (lambda msg, *a, _n=name, **k: calls.append((_n, msg % a if a else msg)))
                              for name in ("info", "warning", "error", "debug")})
    log = LevelledLog(fake)
    log.info("25/11/20 02:00:01 ERROR Executor: lost")
    log.info("Identified spark application id: %s", "app-1")  # the hook's own formatted lines stay INFO
    log.debug("spark-submit command")
    assert calls == [("error", "25/11/20 02:00:01 ERROR Executor: lost"),
                     ("info", "Identified spark application id: app-1"), ("debug", "spark-submit command")]


def context(conf: dict, run_type: str = "manual") -> dict:
    dag = SimpleNamespace(dag_id="nightly", params={"run_date": None, "full_refresh": False, "als_params": {}})
    return {"dag": dag, "dag_run": SimpleNamespace(conf=conf, run_type=run_type)}


def test_a_misspelt_param_fails_the_run_naming_the_closest_one():
    assert unknown({"run_dte": "2026-11-20", "full_refresh": True, "zzz": 1}, ["run_date", "full_refresh"]) == [
        "'run_dte' (did you mean 'run_date'?)", "'zzz'"]
    refuse_unknown(context({"run_date": DAY, "als_params": {"rank": 8}}))  # declared keys pass
    refuse_unknown(context({}))
    with pytest.raises(AirflowFailException, match=r"unknown param 'run_dte' \(did you mean 'run_date'\?\); "
                                                   r"nightly takes als_params, full_refresh, run_date"):
        refuse_unknown(context({"run_dte": DAY}))


def test_a_scheduled_run_without_data_is_skipped_and_a_manual_run_never(lake, monkeypatch, caplog):
    monkeypatch.setattr(clickstream, "LAKE", lake)
    landed = clickstream.input_landed.function
    with caplog.at_level(logging.WARNING):
        assert landed(DAY, **context({}, "scheduled")) is False
    assert f"scheduled run for {DAY}: no clickstream under {lake.raw_day(clickstream.TOPIC, as_date(DAY))}" \
        in caplog.text and "Trigger the DAG with run_date=2026-11-20" in caplog.text
    assert landed(DAY, **context({}, "manual")) is True
    storage.write_atomic(lake.raw_file(clickstream.TOPIC, as_date(DAY), 0, 0, 9), b"{}\n")
    assert landed(DAY, **context({}, "scheduled")) is True


def test_summaries_go_through_logging_not_stdout(lake, monkeypatch, caplog, capsys):
    monkeypatch.setattr(shared, "LAKE", lake)
    report = {"status": "published", "run_id": "r1", "counts": {"change:u": 3},
              "tables": {"users": {"counts": {"current_rows": 5}}}}
    storage.write_atomic(lake.report_file(STAGE, as_date(DAY)), json.dumps(report).encode())
    with caplog.at_level(logging.INFO, logger="pipeline_airflow.tasks.cdc"):
        summary = summarise_cdc.function(DAY)
    assert summary["tables"] == {"users": {"current_rows": 5}}
    assert f"CDC merge of {DAY}:" in caplog.text and '"current_rows": 5' in caplog.text
    assert capsys.readouterr().out == ""


def test_publishing_without_a_reports_bucket_is_skipped_and_says_how_to_set_one(monkeypatch):
    monkeypatch.delenv(f"AIRFLOW_CONN_{shared.REPORTS_CONN_ID.upper()}", raising=False)
    monkeypatch.delenv("PIPELINE_REPORTS_BUCKET", raising=False)
    with pytest.raises(AirflowSkipException, match="no reports bucket configured: set the ab_reports_s3 connection "
                                                   "or PIPELINE_REPORTS_BUCKET; the report stays in the lake"):
        publish_ab_report.function(DAY)
