"""A UI-style trigger on distributed workers: `make airflow` with the CeleryExecutor (Redis as the broker,
PostgreSQL as the metadata database, one Celery worker); the DAGs are triggered through the REST API."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
import urllib.error
import urllib.request

import pytest

from demo import cli as demo_cli
from demo import shop as demo_oltp
from jobs.common.paths import Lake
from tests.airflow_env import REPO, embedded_env
from tests.integration.conftest import free_port, postgres, redis_url  # noqa: F401 (fixtures)


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


def login(base: str, password: str) -> str:
    request = urllib.request.Request(f"{base}/auth/token", method="POST", headers={"Content-Type": "application/json"},
                                     data=json.dumps({"username": "admin", "password": password}).encode())
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())["access_token"]


@pytest.fixture(scope="module")
def airflow_services(tmp_path_factory, postgres, redis_url):  # noqa: F811 (fixtures)
    """`make airflow` (scripts/pipeline.sh airflow), the command the README gives for the UI, on a demo lake, with
    the CeleryExecutor: it starts the services and a Celery worker and prints the URL and the admin password;
    the test logs in with them."""
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
    demo_cli.main(["--start-date", "2026-11-19", "--days", "2", "--events-per-day", "2000", "--users", "300",
                   "--items", "100", "--lake-root", lake.root, "--oltp-from", "2026-11-20"])
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
        yield api, home
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


def test_trigger_with_params_through_the_api(airflow_services):
    api, home = airflow_services
    conf = demo_oltp.snapshot_params(Lake((home / "lake").as_uri()), "2026-11-20")
    state, states = run_to_end(api, "cdc_ingestion", conf)
    assert state == "success", (states, (home / "logs" / "services" / "scheduler.log").read_text()[-3000:])
    assert states == {"resolve_run_date": "success", "drain_cdc": "skipped", "snapshot_requested": "success",
                      "cdc_snapshot": "success", "cdc_merge": "success", "privacy_erasure": "success",
                      "summarise_cdc": "success"}
    cdc = json.loads((home / "lake" / "reports" / "cdc" / "dt=2026-11-20" / "run.json").read_text())
    dumped = len((home / "lake" / "raw" / "_exports" / "oltp-2026-11-20" / "users.json").read_text().splitlines())
    assert cdc["tables"]["users"]["counts"]["events"]["r:applied"] == dumped  # the whole snapshot, via the UI params

    state, states = run_to_end(api, "nightly", {"run_date": "2026-11-20", "full_refresh": True,
                                                 "als_force_retrain": True, "als_params": {"rank": 12}})
    assert state == "success", (states, (home / "logs" / "services" / "scheduler.log").read_text()[-3000:])
    # no reports bucket is configured here: publishing is skipped, the report stays in the lake. Every task ran on
    # the Celery worker (its log names them)
    worker_log = (home / "logs" / "services" / "celery-worker.log").read_text()
    assert "als_train" in worker_log and "clickstream_bronze" in worker_log, worker_log[-2000:]
    assert states == {"resolve_run_date": "success", "drain_clickstream": "skipped", "input_landed": "success",
                      "wait_for_cdc": "success",
                      "clickstream_bronze": "success", "summarise_outputs": "success", "apply_retention": "success",
                      "ab_report": "success", "publish_ab_report": "skipped",
                      "als_due": "success", "als_train": "success", "summarise_als": "success",
                      "features_daily": "success"}
    als = json.loads((home / "lake" / "reports" / "als" / "dt=2026-11-20" / "run.json").read_text())
    assert als["params"]["rank"] == 12 and als["status"] == "skipped"  # the UI's params reached spark-submit
    assert (home / "lake" / "reports" / "ab" / "dt=2026-11-20" / "report.json").exists()
    manifest = json.loads((home / "lake" / "bronze" / "clickstream" / "dt=2026-11-20" / "_manifest.json").read_text())
    assert manifest["status"] == "published" and manifest["counts"]["bronze"] > 1_000


def test_misspelt_params_are_refused_and_a_scheduled_run_without_data_is_skipped(airflow_services):
    api, home = airflow_services
    state, states = run_to_end(api, "nightly", {"run_dte": "2026-11-20"})
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
