"""The real nightly DAG under `airflow dags test` (SQLite, Spark local[*]) on generated demo data."""

from __future__ import annotations

import json
import re

import boto3
import pytest

from demo import cli as demo_cli
from demo import shop as demo_oltp
from jobs.common import storage
from jobs.common.paths import Lake, as_date
from tests.airflow_env import airflow, embedded_env

DAY = "2026-11-20"
BUCKET = "e2e-reports"


@pytest.fixture(scope="module")
def env_and_lake(tmp_path_factory, s3_endpoint):
    home = tmp_path_factory.mktemp("airflow")
    lake = Lake((home / "lake").as_uri())
    env = embedded_env(home, lake.root)
    boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1", aws_access_key_id="test",
                 aws_secret_access_key="test").create_bucket(Bucket=BUCKET)
    env["AIRFLOW_CONN_AB_REPORTS_S3"] = json.dumps({
        "conn_type": "aws", "login": "test", "password": "test",
        "extra": {"bucket": BUCKET, "prefix": "ab", "endpoint_url": s3_endpoint}})
    airflow(env, "db", "migrate")
    airflow(env, "pools", "set", "kafka_drain", "1", "serialises Kafka drains")
    assert demo_cli.main(["--start-date", "2026-11-19", "--days", "2", "--events-per-day", "3000",
                                "--users", "400", "--items", "200", "--lake-root", lake.root, "--oltp-from", DAY]) == 0
    # the nightly waits for the date's CDC merge: onboard the shop's tables from their dump, merge the day
    result = airflow(env, "dags", "test", "cdc_ingestion", "--conf",
                     json.dumps(demo_oltp.snapshot_params(lake, DAY)), check=False)
    assert "DagRun Finished: dag_id=cdc_ingestion" in result.stdout + result.stderr
    assert re.search(r"DagRun Finished: dag_id=cdc_ingestion, .*?state=success", result.stdout + result.stderr), (
        (result.stdout + result.stderr)[-3000:])
    return env, lake


def dags_test(env, **conf) -> tuple[str, dict[str, str]]:
    """Run the nightly DAG once; return the run's state and each task's state."""
    result = airflow(env, "dags", "test", "nightly", "--conf", json.dumps({"run_date": DAY, **conf}),
                     check=False)
    output = result.stdout + result.stderr
    finished = re.search(r"DagRun Finished: dag_id=nightly, .*?run_id=([^,]+), .*?state=(\w+)", output)
    assert finished, output[-3000:]
    if finished.group(2) != "success":
        print(output[-6000:])  # shown by pytest when an assertion below fails
    run_id, state = finished.groups()
    states = json.loads(airflow(env, "tasks", "states-for-dag-run", "nightly", run_id, "-o", "json").stdout)
    return state, {t["task_id"]: t["state"] for t in states}


def manifest(lake: Lake) -> dict:
    return json.loads(storage.read_bytes(Lake.manifest(lake.partition("bronze", "clickstream", as_date(DAY)))))


def ab_report_json(lake: Lake) -> dict:
    return json.loads(storage.read_bytes(f"{lake.partition('reports', 'ab', as_date(DAY))}/report.json"))


def s3_object(endpoint: str, key: str) -> bytes:
    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="test",
                          aws_secret_access_key="test")
    return client.get_object(Bucket=BUCKET, Key=key)["Body"].read()


def bronze_rows(spark, lake):
    return sorted(tuple(r) for r in spark.read.parquet(lake.partition("bronze", "clickstream", as_date(DAY))).collect())


def test_nightly_twice_gives_the_same_partition_and_report(env_and_lake, spark, s3_endpoint):
    env, lake = env_and_lake
    state, tasks = dags_test(env)
    assert state == "success", tasks
    assert tasks == {"resolve_run_date": "success", "drain_clickstream": "skipped", "input_landed": "success",
                     "wait_for_cdc": "success",
                     "clickstream_bronze": "success", "summarise_outputs": "success", "apply_retention": "success",
                     "ab_report": "success", "publish_ab_report": "success",
                     "als_due": "success", "als_train": "success", "summarise_als": "success",
                     "features_daily": "success"}
    users = json.loads(storage.read_bytes(Lake.manifest(lake.partition("gold", "features/user_day", as_date(DAY)))))
    assert users["status"] == "published" and users["rows"] > 100 and users["validation"]["success"]
    # two days of data, both in the holdout window: ALS says why it did not train, champion untouched
    als = json.loads(storage.read_bytes(f"{lake.partition('reports', 'als', as_date(DAY))}/run.json"))
    assert als["status"] == "skipped" and als["reason"].startswith("too few interactions to train: 0 interactions")
    first, rows = manifest(lake), bronze_rows(spark, lake)
    report = ab_report_json(lake)
    assert [e["id"] for e in report["experiments"]] == ["exp_checkout_button", "exp_homepage_aa", "exp_ranking_srm"]
    assert all(e["srm"]["observed"]["control"] > 50 for e in report["experiments"])
    assert any("bronze clickstream missing for" in w for w in report["experiments"][0]["warnings"])
    assert first["counts"]["bronze"] == len(rows) > 2_000
    assert len({r[0] for r in rows}) == len(rows)  # event ids unique

    # the rerun rebuilds the day and recomputes one experiment: the same data gives the same bronze and the same
    # report (no run-dependent values), and the other experiments are kept, not dropped
    state, tasks = dags_test(env, full_refresh=True, experiments=["exp_homepage_aa"])
    assert state == "success" and tasks["ab_report"] == "success"
    second = manifest(lake)
    assert second["run_id"] != first["run_id"] and second["counts"] == first["counts"]
    assert bronze_rows(spark, lake) == rows
    assert ab_report_json(lake) == report
    history = storage.list_files(lake.table("gold", "ab/history"), ".parquet")
    assert len(history) == 1  # the date's history partition was replaced, not appended to
    latest = json.loads(s3_object(s3_endpoint, "ab/latest.json"))
    uploaded = json.loads(s3_object(s3_endpoint, latest["report_json"]))
    assert uploaded == report and latest["report_date"] == DAY
    assert latest == json.loads(s3_object(s3_endpoint, f"ab/dt={DAY}/latest.json"))


def test_validation_failure_stops_downstream_and_publishes_nothing(env_and_lake, spark):
    env, lake = env_and_lake
    before_rows, before = bronze_rows(spark, lake), manifest(lake)
    # the week before had a million rows a day (days without raw files: the nightly's revisit of the lateness
    # window leaves them alone), so tonight's 3,000 fail the row-count gate
    week = [lake.partition("bronze", "clickstream", as_date(f"2026-11-{day}")) for day in range(13, 19)]
    for partition in week:
        storage.write_atomic(Lake.manifest(partition), json.dumps({"counts": {"bronze": 1_000_000}}).encode())
    try:
        state, tasks = dags_test(env, full_refresh=True)
    finally:
        for partition in week:
            filesystem, path = storage.resolve(partition)
            filesystem.delete_dir(path)
    assert state == "failed"
    assert tasks["clickstream_bronze"] == "failed"  # not up_for_retry: a rejected batch is final
    assert tasks["summarise_outputs"] == "upstream_failed"
    assert tasks["ab_report"] == "upstream_failed" and tasks["publish_ab_report"] == "upstream_failed"
    assert tasks["als_due"] == tasks["als_train"] == tasks["summarise_als"] == "upstream_failed"
    assert tasks["wait_for_cdc"] == "success"  # the CDC tables do not depend on the clickstream gate
    assert tasks["features_daily"] == "upstream_failed"
    assert manifest(lake)["run_id"] == before["run_id"] and bronze_rows(spark, lake) == before_rows
    rejected = storage.list_files(f"{lake.root}/quarantine/_rejected_batches/bronze/clickstream/dt={DAY}",
                                  "_manifest.json")
    assert rejected and json.loads(storage.read_bytes(rejected[-1]))["status"] == "rejected"
    docs = storage.list_files(f"{lake.zone('data_docs')}/clickstream_bronze/dt={DAY}", "index.html")
    assert len(docs) == 3  # one per validation run, the rejected one included
