"""The real DAGs end to end on generated demo data, started as a user starts them: `make airflow` with the
CeleryExecutor (Redis as the broker, PostgreSQL as the metadata database, one Celery worker), the DAGs triggered
through the REST API with params as the UI does; and `airflow dags test`, the README's demo command, on the same
database. One set of services and one onboarded lake serve every test here (they run in file order)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import boto3
import pytest

from demo import cli as demo_cli
from demo import shop as demo_oltp
from jobs.cdc import layout as cdc_layout
from jobs.common import storage
from jobs.common.catalog import pyiceberg_catalog
from jobs.common.paths import Lake, as_date
from tests.airflow_env import REPO, airflow, embedded_env
from tests.integration.conftest import free_port, postgres, redis_url  # noqa: F401 (fixtures)

DAY = "2026-11-20"
BUCKET = "e2e-reports"


class Api:
    """The Airflow REST API as the UI uses it: a bearer token from the login, JSON in and out."""

    def __init__(self, base: str, token: str) -> None:
        self.base, self.token = base, token

    def __call__(self, method: str, path: str, body: dict | None = None) -> dict:
        request = urllib.request.Request(f"{self.base}/api/v2{path}", method=method,
                                         data=json.dumps(body).encode() if body else None,
                                         headers={"Content-Type": "application/json",
                                                  "Authorization": f"Bearer {self.token}"})
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())


@dataclass
class Services:
    api: Api
    home: Path
    lake: Lake
    env: dict[str, str]  # the services' environment: `airflow` CLI calls reach the same database


def login(base: str, password: str) -> str:
    request = urllib.request.Request(f"{base}/auth/token", method="POST", headers={"Content-Type": "application/json"},
                                     data=json.dumps({"username": "admin", "password": password}).encode())
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())["access_token"]


@pytest.fixture(scope="module")
def services(tmp_path_factory, postgres, redis_url, s3_endpoint):  # noqa: F811 (fixtures)
    """`make airflow` (scripts/pipeline.sh airflow), the command the README gives for the UI, on a demo lake, with
    the CeleryExecutor and a reports bucket: it starts the services and a Celery worker and prints the URL and the
    admin password; the tests log in with them."""
    home = tmp_path_factory.mktemp("airflow-services")
    lake = Lake((home / "lake").as_uri())
    postgres.sql("DROP DATABASE IF EXISTS airflow")
    postgres.sql("CREATE DATABASE airflow")
    env = embedded_env(home, lake.root)
    # the DAG files do not change here: parsed at start, then not again every few seconds (CPU the tests need)
    env.update({"AIRFLOW__CORE__EXECUTOR": "CeleryExecutor", "AIRFLOW__CELERY__BROKER_URL": redis_url,
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN":
                    f"postgresql+psycopg2://postgres@127.0.0.1:{postgres.port}/airflow",
                "AIRFLOW__CELERY__RESULT_BACKEND": f"db+postgresql+psycopg2://postgres@127.0.0.1:{postgres.port}/airflow",
                "AIRFLOW_PORT": str(free_port()), "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "600",
                "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
                "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port())})
    boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1", aws_access_key_id="test",
                 aws_secret_access_key="test").create_bucket(Bucket=BUCKET)
    env["AIRFLOW_CONN_AB_REPORTS_S3"] = json.dumps({
        "conn_type": "aws", "login": "test", "password": "test",
        "extra": {"bucket": BUCKET, "prefix": "ab", "endpoint_url": s3_endpoint}})
    assert demo_cli.main(["--start-date", "2026-11-19", "--days", "2", "--events-per-day", "3000", "--users", "400",
                          "--items", "200", "--lake-root", lake.root, "--oltp-from", DAY]) == 0
    out = open(home / "make-airflow.log", "w")
    proc = subprocess.Popen(["bash", "scripts/pipeline.sh", "airflow"], env=env, cwd=REPO, stdout=out,
                            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        printed = ""
        while "password: " not in printed:
            assert proc.poll() is None and time.monotonic() < deadline, printed[-3000:]
            time.sleep(1)
            printed = (home / "make-airflow.log").read_text()
        base = re.search(r"Airflow UI: (http://\S+)", printed).group(1)
        api = Api(base, login(base, re.search(r"password: (\S+)", printed).group(1)))
        while True:  # the DAG processor has registered the DAG
            try:
                api("GET", "/dags/nightly")
                break
            except urllib.error.HTTPError:
                assert time.monotonic() < deadline, "the DAG processor did not register the DAGs"
                time.sleep(2)
        yield Services(api, home, lake, env)
        for dag_id in ("nightly", "cdc_ingestion"):  # no new scheduled runs while the services stop
            api("PATCH", f"/dags/{dag_id}", {"is_paused": True})
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C, as a user stops it
            try:  # the Celery worker's warm shutdown waits for a running task: minutes on a loaded machine
                proc.wait(300)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                raise
        out.close()


def task_states(api: Api, dag_id: str, run_id: str) -> dict[str, str | None]:
    tasks = api("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances")["task_instances"]
    return {t["task_id"]: t["state"] for t in tasks}


def run_to_end(api: Api, dag_id: str, conf: dict, stall_seconds: float = 900,
               overall_seconds: float = 3600) -> tuple[str, dict[str, str]]:
    """Trigger a DAG run as the UI does (params in conf), unpause, and wait while its tasks make progress.

    A loaded machine may take long, so the wait follows the task states: it fails only when nothing changed
    for `stall_seconds` (or after `overall_seconds`), naming the tasks that were still running."""
    run = api("POST", f"/dags/{dag_id}/dagRuns", {"logical_date": None, "conf": conf})
    api("PATCH", f"/dags/{dag_id}", {"is_paused": False})
    return wait_for(api, dag_id, run["dag_run_id"], stall_seconds, overall_seconds)


def wait_for(api: Api, dag_id: str, run_id: str, stall_seconds: float = 900,
             overall_seconds: float = 3600) -> tuple[str, dict[str, str]]:
    run = api("GET", f"/dags/{dag_id}/dagRuns/{run_id}")
    started = last_change = time.monotonic()
    state, states = run["state"], {}
    while state not in ("success", "failed"):
        time.sleep(5)
        state = api("GET", f"/dags/{dag_id}/dagRuns/{run['dag_run_id']}")["state"]
        now_states = task_states(api, dag_id, run["dag_run_id"])
        if now_states != states:
            states, last_change = now_states, time.monotonic()
        waiting = {t: s for t, s in states.items() if s not in ("success", "failed", "skipped", "upstream_failed")}
        if time.monotonic() - last_change > stall_seconds or time.monotonic() - started > overall_seconds:
            pytest.fail(f"{dag_id} run {run['dag_run_id']} made no progress for {stall_seconds:.0f}s "
                        f"(or ran over {overall_seconds:.0f}s); still not finished: {waiting}")
    return state, task_states(api, dag_id, run["dag_run_id"])


NIGHTLY_TASKS = {"resolve_run_date": "success", "drain_clickstream": "skipped", "input_landed": "success",
                 "wait_for_cdc": "success", "clickstream_bronze": "success", "summarise_outputs": "success",
                 "apply_retention": "success", "ab_report": "success", "publish_ab_report": "success",
                 "als_due": "success", "als_train": "success", "summarise_als": "success",
                 "features_daily": "success"}


def manifest(lake: Lake) -> dict:
    return json.loads(storage.read_bytes(Lake.manifest(lake.partition("bronze", "clickstream", as_date(DAY)))))


def ab_report_json(lake: Lake) -> dict:
    return json.loads(storage.read_bytes(f"{lake.partition('reports', 'ab', as_date(DAY))}/report.json"))


def s3_object(endpoint: str, key: str) -> bytes:
    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="test",
                          aws_secret_access_key="test")
    return client.get_object(Bucket=BUCKET, Key=key)["Body"].read()


def bronze_rows(spark, lake: Lake) -> list[tuple]:
    return sorted(tuple(r) for r in spark.read.parquet(lake.partition("bronze", "clickstream", as_date(DAY))).collect())


def scheduler_log(home: Path) -> str:
    return (home / "logs" / "services" / "scheduler.log").read_text()[-3000:]


def test_ui_triggers_onboard_the_shop_run_the_nightly_on_the_worker_and_a_rerun_changes_nothing(
        services, spark, s3_endpoint):
    api, home, lake = services.api, services.home, services.lake
    state, states = run_to_end(api, "cdc_ingestion", demo_oltp.snapshot_params(lake, DAY))
    assert state == "success", (states, scheduler_log(home))
    assert states == {"resolve_run_date": "success", "drain_cdc": "skipped", "snapshot_requested": "success",
                      "cdc_snapshot": "success", "cdc_merge": "success", "privacy_erasure": "success",
                      "summarise_cdc": "success"}
    cdc = json.loads((home / "lake" / "reports" / "cdc" / f"dt={DAY}" / "run.json").read_text())
    dumped = len((home / "lake" / "raw" / "_exports" / f"oltp-{DAY}" / "users.json").read_text().splitlines())
    assert cdc["tables"]["users"]["counts"]["events"]["r:applied"] == dumped  # the whole snapshot, via the UI params

    # the nightly waits for the date's CDC merge (done above); the UI's params reach every task
    state, states = run_to_end(api, "nightly", {"run_date": DAY, "full_refresh": True, "als_force_retrain": True,
                                                 "als_params": {"rank": 12}})
    assert state == "success", (states, scheduler_log(home))
    assert states == NIGHTLY_TASKS
    worker_log = (home / "logs" / "services" / "celery-worker.log").read_text()
    assert "als_train" in worker_log and "clickstream_bronze" in worker_log, worker_log[-2000:]  # on the worker
    users = json.loads(storage.read_bytes(Lake.manifest(lake.partition("gold", "features/user_day", as_date(DAY)))))
    assert users["status"] == "published" and users["rows"] > 100 and users["validation"]["success"]
    # two days of data, both in the holdout window: ALS says why it did not train, the champion is untouched
    als = json.loads(storage.read_bytes(f"{lake.partition('reports', 'als', as_date(DAY))}/run.json"))
    assert als["params"]["rank"] == 12  # the UI's als_params reached spark-submit
    assert als["status"] == "skipped" and als["reason"].startswith("too few interactions to train: 0 interactions")
    first, rows = manifest(lake), bronze_rows(spark, lake)
    report = ab_report_json(lake)
    assert [e["id"] for e in report["experiments"]] == ["exp_checkout_button", "exp_homepage_aa", "exp_ranking_srm"]
    assert all(e["srm"]["observed"]["control"] > 50 for e in report["experiments"])
    assert any("bronze clickstream missing for" in w for w in report["experiments"][0]["warnings"])
    assert first["status"] == "published" and first["counts"]["bronze"] == len(rows) > 2_000
    assert len({r[0] for r in rows}) == len(rows)  # event ids unique

    # the rerun rebuilds the day and recomputes one experiment: the same data gives the same bronze and the same
    # report (no run-dependent values), and the other experiments are kept, not dropped
    state, states = run_to_end(api, "nightly", {"run_date": DAY, "full_refresh": True,
                                                 "experiments": ["exp_homepage_aa"]})
    assert state == "success" and states["ab_report"] == "success", (states, scheduler_log(home))
    second = manifest(lake)
    assert second["run_id"] != first["run_id"] and second["counts"] == first["counts"]
    assert bronze_rows(spark, lake) == rows
    assert ab_report_json(lake) == report
    # the night's history rows in the Iceberg table were replaced, not appended to: one commit per run, both named
    ab_manifest = json.loads(storage.read_bytes(Lake.manifest(lake.partition("reports", "ab", as_date(DAY)))))
    history = pyiceberg_catalog(lake).load_table("gold.ab_history")
    assert len(history.scan().to_arrow()) == ab_manifest["rows"]["history"] > 0
    assert history.current_snapshot().snapshot_id == ab_manifest["tables_written"]["lake.gold.ab_history"]
    latest = json.loads(s3_object(s3_endpoint, "ab/latest.json"))
    uploaded = json.loads(s3_object(s3_endpoint, latest["report_json"]))
    assert uploaded == report and latest["report_date"] == DAY
    assert latest == json.loads(s3_object(s3_endpoint, f"ab/dt={DAY}/latest.json"))


def test_misspelt_params_are_refused_and_scheduled_runs_without_data_change_nothing(services):
    api = services.api
    state, states = run_to_end(api, "nightly", {"run_dte": DAY})
    assert state == "failed" and states.pop("resolve_run_date") == "failed"
    assert set(states.values()) == {"upstream_failed"}, states

    # unpausing `nightly` made the scheduler create a run for the last 02:00 tick: its day has no data
    scheduled = [r for r in api("GET", "/dags/nightly/dagRuns")["dag_runs"] if r["run_type"] == "scheduled"]
    assert scheduled, "the scheduler created no run for the last tick"
    state, states = wait_for(api, "nightly", scheduled[0]["dag_run_id"])
    assert state == "success", states
    assert {t: s for t, s in states.items() if s != "skipped"} == {"resolve_run_date": "success",
                                                                   "input_landed": "success"}
    log = api("GET", f"/dags/nightly/dagRuns/{scheduled[0]['dag_run_id']}/taskInstances/input_landed/logs/1")
    assert "no clickstream under" in json.dumps(log) and "the run is skipped" in json.dumps(log)

    # unpausing `cdc_ingestion` (first test) queued a run for its last 00:30 tick behind the onboarding run: a
    # night without changes merges nothing and erases no one
    scheduled = [r for r in api("GET", "/dags/cdc_ingestion/dagRuns")["dag_runs"] if r["run_type"] == "scheduled"]
    assert scheduled, "the scheduler created no CDC run for the last tick"
    state, states = wait_for(api, "cdc_ingestion", scheduled[0]["dag_run_id"])
    assert state == "success" and states["cdc_merge"] == states["privacy_erasure"] == "success", states
    lake = services.lake
    quiet = [p for p in storage.list_files(lake.table("reports", "cdc"), "run.json") if f"dt={DAY}" not in p]
    assert len(quiet) == 1, quiet
    report = json.loads(storage.read_bytes(quiet[0]))
    assert report["status"] == "published" and report["tables"] == {} and report["quarantined"] == 0, report
    onboarded = json.loads(storage.read_bytes(lake.report_file("cdc", as_date(DAY))))["tables"]
    for table in onboarded:  # the quiet night published none of the tables
        for kind in cdc_layout.KINDS:
            assert json.loads(storage.read_bytes(Lake.manifest(lake.silver(table, kind))))["run_id"] != report["run_id"]
    assert not storage.list_files(lake.partition("reports", "privacy", as_date(report["dt"])))


def dags_test(env: dict[str, str], **conf) -> tuple[str, dict[str, str]]:
    """Run the nightly DAG once with `airflow dags test` (tasks in this process, not on the worker); return the run's
    state and each task's state."""
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


def test_validation_failure_stops_downstream_and_publishes_nothing(services, spark):
    api, lake = services.api, services.lake
    before_rows, before = bronze_rows(spark, lake), manifest(lake)
    # `dags test` runs the tasks itself: the scheduler must not pick the run up for the worker as well
    api("PATCH", "/dags/nightly", {"is_paused": True})
    # the week before had a million rows a day (days without raw files: the nightly's revisit of the lateness
    # window leaves them alone), so tonight's 3,000 fail the row-count gate
    week = [lake.partition("bronze", "clickstream", as_date(f"2026-11-{day}")) for day in range(13, 19)]
    for partition in week:
        storage.write_atomic(Lake.manifest(partition), json.dumps({"counts": {"bronze": 1_000_000}}).encode())
    try:
        state, tasks = dags_test(services.env, full_refresh=True)
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
