"""Every DAG imports in a real Airflow DagBag and follows the project's conventions."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.airflow_env import REPO, embedded_env


@pytest.fixture(scope="module")
def dagbag(tmp_path_factory):
    env = embedded_env(tmp_path_factory.mktemp("airflow"), "file:///tmp/unused-lake")
    env.pop("PIPELINE_TASK_RETRIES")  # check the retries users get
    code = """
import json
try:
    from airflow.dag_processing.dagbag import DagBag
except ImportError:
    from airflow.models.dagbag import DagBag
bag = DagBag()
out = {"errors": {k: str(v) for k, v in bag.import_errors.items()}, "dags": {}}
for dag_id, dag in bag.dags.items():
    out["dags"][dag_id] = {
        "doc_md": bool(dag.doc_md), "catchup": dag.catchup, "tags": sorted(dag.tags),
        "timetable": type(dag.timetable).__name__, "params": sorted(dag.params.keys()),
        "order": [t.task_id for t in dag.topological_sort()],
        "tasks": {t.task_id: {"doc": bool(t.doc_md), "retries": t.retries, "type": type(t).__name__,
                              "upstream": sorted(t.upstream_task_ids),
                              "trigger_rule": getattr(t.trigger_rule, "value", t.trigger_rule),
                              "conn_id": getattr(t, "_conn_id", None),
                              "application": getattr(t, "application", None),
                              "options": getattr(t, "options", None), "switches": getattr(t, "switches", None),
                              "jdbc_conn_id": getattr(t, "jdbc_conn_id", None)}
                  for t in dag.tasks},
    }
print("JSON" + json.dumps(out))
"""
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=REPO)
    line = next((x for x in result.stdout.splitlines() if x.startswith("JSON")), None)
    assert line, result.stderr[-3000:]
    return json.loads(line[4:])


def test_no_import_errors(dagbag):
    assert dagbag["errors"] == {}
    assert set(dagbag["dags"]) == {"nightly", "clickstream_ingestion", "cdc_ingestion", "privacy_erasure",
                                   "training_set", "table_maintenance"}


@pytest.mark.parametrize("dag_id", ["nightly", "clickstream_ingestion", "cdc_ingestion", "privacy_erasure",
                                    "training_set", "table_maintenance"])
def test_conventions(dagbag, dag_id):
    dag = dagbag["dags"][dag_id]
    assert dag["doc_md"] and dag["tags"] and dag["catchup"] is False
    manual = dag_id in ("privacy_erasure", "training_set")
    assert dag["timetable"] == ("NullTimetable" if manual else "CronTriggerTimetable")
    for task_id, task in dag["tasks"].items():
        assert task["doc"], f"{dag_id}.{task_id} has no doc_md"
        assert task["retries"] >= (0 if task_id == "resolve_run_date" else 1), task_id


def test_table_maintenance_is_weekly_through_spark_submit(dagbag):
    dag = dagbag["dags"]["table_maintenance"]
    assert dag["order"] == ["resolve_run_date", "maintenance_tables"]
    task = dag["tasks"]["maintenance_tables"]
    assert task["type"] == "SparkJobOperator" and task["application"].endswith("jobs/maintenance_tables.py")
    assert set(task["options"]) == {"--date", "--lake-root", "--tables"}


def test_nightly_runs_bronze_through_spark_submit_after_the_drain(dagbag):
    dag = dagbag["dags"]["nightly"]
    upstream = {task_id: task["upstream"] for task_id, task in dag["tasks"].items()}
    assert upstream["drain_clickstream"] == ["resolve_run_date"]
    assert upstream["input_landed"] == ["drain_clickstream", "resolve_run_date"]
    assert upstream["clickstream_bronze"] == ["input_landed"]
    assert upstream["summarise_outputs"] == ["clickstream_bronze", "resolve_run_date", "wait_for_cdc"]
    assert upstream["wait_for_cdc"] == ["input_landed", "resolve_run_date"]
    # a scheduled night without data skips everything after it (trigger rules aside), and runs after a
    # skipped drain (raw source)
    assert dag["tasks"]["input_landed"]["trigger_rule"] == "none_failed"
    assert dag["tasks"]["wait_for_cdc"]["type"] == "DecoratedSensorOperator"
    assert dag["params"] == ["als_force_retrain", "als_params", "als_search", "experiments", "features",
                             "full_refresh", "run_date"]
    bronze = dag["tasks"]["clickstream_bronze"]
    assert bronze["type"] == "SparkJobOperator" and bronze["conn_id"] == "spark_default"
    assert bronze["application"] == str(REPO / "jobs" / "clickstream_bronze.py")
    assert bronze["options"]["--date"] == "{{ ti.xcom_pull(task_ids='resolve_run_date') }}"
    assert bronze["trigger_rule"] == "none_failed"  # runs when the drain is skipped (raw source)
    assert dagbag["dags"]["nightly"]["tasks"]["summarise_outputs"]["trigger_rule"] == "all_success"


def test_nightly_reports_ab_only_after_the_validated_bronze(dagbag):
    tasks = dagbag["dags"]["nightly"]["tasks"]
    report = tasks["ab_report"]
    assert report["upstream"] == ["clickstream_bronze"] and report["trigger_rule"] == "all_success"
    assert report["type"] == "SparkJobOperator" and report["application"] == str(REPO / "jobs" / "ab_report.py")
    assert report["options"]["--experiments"] == "{{ params.experiments | join(',') }}"
    assert tasks["publish_ab_report"]["upstream"] == ["ab_report", "resolve_run_date"]


def test_nightly_trains_als_after_the_validated_bronze_when_due(dagbag):
    tasks = dagbag["dags"]["nightly"]["tasks"]
    assert tasks["als_due"]["upstream"] == ["clickstream_bronze", "resolve_run_date"]
    assert tasks["als_due"]["type"] == "_ShortCircuitDecoratedOperator"
    train = tasks["als_train"]
    assert train["upstream"] == ["als_due"] and train["type"] == "SparkJobOperator"
    assert train["application"] == str(REPO / "jobs" / "als_train.py")
    assert train["options"]["--params"] == "{{ params.als_params | tojson if params.als_params else '' }}"
    assert train["switches"] == {"--search": "{{ params.als_search }}"}  # a real switch, not "--search true"
    assert tasks["summarise_als"]["upstream"] == ["als_train", "resolve_run_date"]


def test_nightly_computes_features_after_bronze_and_the_cdc_merge(dagbag):
    tasks = dagbag["dags"]["nightly"]["tasks"]
    features = tasks["features_daily"]
    assert features["upstream"] == ["clickstream_bronze", "wait_for_cdc"] and features["trigger_rule"] == "all_success"
    assert features["type"] == "SparkJobOperator"
    assert features["application"] == str(REPO / "jobs" / "features_daily.py")
    assert features["options"]["--features"] == "{{ params.features | join(',') }}"
    assert features["switches"] == {"--revisit-late": "{{ not params.features }}"}  # a subset is just that day
    training = dagbag["dags"]["training_set"]
    assert training["params"] == ["entities", "features", "max_age_days", "out", "overwrite"]
    assert training["tasks"]["training_set"]["application"] == str(REPO / "jobs" / "training_set.py")


def test_cdc_ingestion_drains_then_snapshots_on_demand_then_merges(dagbag):
    dag = dagbag["dags"]["cdc_ingestion"]
    tasks = dag["tasks"]
    assert dag["order"] == ["resolve_run_date", "drain_cdc", "snapshot_requested", "cdc_snapshot", "cdc_merge",
                            "privacy_erasure", "summarise_cdc"]
    assert dag["params"] == ["run_date", "snapshot_dump", "snapshot_format", "snapshot_tables", "snapshot_taken_at",
                             "snapshot_watermark_binlog", "snapshot_watermark_lsn"]
    assert tasks["snapshot_requested"]["type"] == "_ShortCircuitDecoratedOperator"
    assert tasks["snapshot_requested"]["trigger_rule"] == "none_failed"  # runs when the drain is skipped
    snapshot, merge = tasks["cdc_snapshot"], tasks["cdc_merge"]
    assert snapshot["type"] == merge["type"] == "SparkJobOperator"
    assert snapshot["application"] == str(REPO / "jobs" / "cdc_snapshot.py")
    assert snapshot["options"]["--tables"] == "{{ params.snapshot_tables | join(',') }}"
    assert snapshot["jdbc_conn_id"] == "oltp_postgres"
    assert merge["upstream"] == ["cdc_snapshot"] and merge["trigger_rule"] == "none_failed"  # merges without one
    assert merge["options"]["--date"] == "{{ ti.xcom_pull(task_ids='resolve_run_date') }}"


def test_dag_files_do_not_import_heavy_libraries_at_parse_time(tmp_path):
    code = """
import importlib.util, sys
for name in ("nightly", "clickstream_ingestion", "cdc_ingestion", "training_set", "table_maintenance"):
    spec = importlib.util.spec_from_file_location(name, f"dags/{name}.py")
    spec.loader.exec_module(importlib.util.module_from_spec(spec))
print(sorted(m for m in ("pyspark", "pandas", "great_expectations", "confluent_kafka") if m in sys.modules))
"""
    env = embedded_env(tmp_path, "file:///tmp/unused-lake")
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "[]"


def test_trigger_params_are_checked_before_a_run_starts(tmp_path):
    """What the trigger form (and the REST API) refuses: each bad value fails the params' JSON schema."""
    code = """
import copy
import json
try:
    from airflow.dag_processing.dagbag import DagBag
except ImportError:
    from airflow.models.dagbag import DagBag
bag = DagBag()
cases = {"nightly": [{"als_params": {"rank": "big"}}, {"als_params": {"rank": 10**7}},
                     {"als_params": {"max_iter": 10**6}}, {"als_params": {"rnk": 3}}, {"run_date": "yesterday!"},
                     {"experiments": ["x" * 200]}, {"features": ["serch_count_7d"]}],
         "training_set": [{"entities": "e.parquet", "out": "o", "features": []},
                          {"entities": "e.parquet", "out": "o", "features": ["plan", "no_such_feature"]},
                          {"entities": "", "out": "o", "features": ["plan"]},
                          {"entities": "e.parquet", "out": "o", "features": ["plan"], "max_age_days": 0}],
         "cdc_ingestion": [{"snapshot_watermark_binlog": "1" * 100000}, {"snapshot_watermark_lsn": "not-an-lsn"},
                           {"snapshot_dump": "x" * 5000}, {"snapshot_tables": ["nope"]}],
         "table_maintenance": [{"tables": ["gold"]}, {"tables": ["gold.ab_history; DROP TABLE x"]},
                               {"tables": "gold.ab_history"}]}
good = {"nightly": {"als_params": {"rank": 64, "reg_param": 0.05}, "run_date": "2026-11-20"},
        "cdc_ingestion": {"snapshot_watermark_binlog": "mysql-bin.000003:1041", "snapshot_watermark_lsn": "0/16B3748"},
        "training_set": {"entities": "e.parquet", "out": "o", "features": ["plan", "item_ctr_smoothed_7d"]},
        "table_maintenance": {"tables": ["gold.ab_history", "silver.users_current"]}}
out = {}
for dag_id, confs in cases.items():
    dag = bag.dags[dag_id]
    refused = []
    for conf in confs:
        params = copy.deepcopy(dag.params)
        try:
            params.update(conf)  # what Airflow does with a triggered run's conf, before the run is created
            params.validate()
            refused.append(False)
        except Exception as exc:
            refused.append(type(exc).__name__)
    params = copy.deepcopy(dag.params)
    params.update(good[dag_id])
    params.validate()
    out[dag_id] = refused
print("JSON" + json.dumps(out))
"""
    env = embedded_env(tmp_path, "file:///tmp/unused-lake")
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=REPO)
    line = next((x for x in result.stdout.splitlines() if x.startswith("JSON")), None)
    assert line, result.stderr[-3000:]
    refused = json.loads(line[4:])
    assert refused == {"nightly": ["ParamValidationError"] * 7, "cdc_ingestion": ["ParamValidationError"] * 4,
                       "training_set": ["ParamValidationError"] * 4, "table_maintenance": ["ParamValidationError"] * 3}
