"""The real nightly DAG under `airflow dags test` (SQLite, Spark local[*]) on generated demo data."""

from __future__ import annotations

import json
import re

import pytest

from jobs import demo_generator
from jobs.common import storage
from jobs.common.paths import Lake, as_date
from tests.airflow_env import airflow, embedded_env

DAY = "2026-11-20"
pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def env_and_lake(tmp_path_factory):
    home = tmp_path_factory.mktemp("airflow")
    lake = Lake((home / "lake").as_uri())
    env = embedded_env(home, lake.root)
    airflow(env, "db", "migrate")
    airflow(env, "pools", "set", "kafka_drain", "1", "serialises Kafka drains")
    assert demo_generator.main(["--start-date", "2026-11-19", "--days", "2", "--events-per-day", "3000",
                                "--users", "400", "--items", "200", "--lake-root", lake.root]) == 0
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


def bronze_rows(spark, lake):
    return sorted(tuple(r) for r in spark.read.parquet(lake.partition("bronze", "clickstream", as_date(DAY))).collect())


def test_nightly_twice_gives_the_same_partition(env_and_lake, spark):
    env, lake = env_and_lake
    state, tasks = dags_test(env)
    assert state == "success", tasks
    assert tasks == {"resolve_run_date": "success", "drain_clickstream": "skipped",
                     "clickstream_bronze": "success", "summarise_outputs": "success"}
    first, rows = manifest(lake), bronze_rows(spark, lake)
    assert first["counts"]["bronze"] == len(rows) > 2_000
    assert len({r[0] for r in rows}) == len(rows)  # event ids unique

    state, _ = dags_test(env, full_refresh=True)
    assert state == "success"
    second = manifest(lake)
    assert second["run_id"] != first["run_id"] and second["counts"] == first["counts"]
    assert bronze_rows(spark, lake) == rows


def test_validation_failure_stops_downstream_and_publishes_nothing(env_and_lake, spark):
    env, lake = env_and_lake
    before_rows, before = bronze_rows(spark, lake), manifest(lake)
    yesterday = lake.partition("bronze", "clickstream", as_date("2026-11-19"))
    storage.write_atomic(Lake.manifest(yesterday), json.dumps({"counts": {"bronze": 1_000_000}}).encode())
    try:
        state, tasks = dags_test(env, full_refresh=True)
    finally:
        filesystem, path = storage.resolve(yesterday)
        filesystem.delete_dir(path)
    assert state == "failed"
    assert tasks["clickstream_bronze"] == "failed"  # not up_for_retry: a rejected batch is final
    assert tasks["summarise_outputs"] == "upstream_failed"
    assert manifest(lake)["run_id"] == before["run_id"] and bronze_rows(spark, lake) == before_rows
    rejected = storage.list_files(f"{lake.root}/quarantine/_rejected_batches/bronze/clickstream/dt={DAY}",
                                  "_manifest.json")
    assert rejected and json.loads(storage.read_bytes(rejected[-1]))["status"] == "rejected"
    docs = storage.list_files(f"{lake.data_docs()}/clickstream_bronze/dt={DAY}", "index.html")
    assert len(docs) == 3  # one per validation run, the rejected one included
