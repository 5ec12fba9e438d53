"""A UI-style trigger: the Airflow 3 API server, scheduler and DAG processor run the nightly DAG."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.request

import pytest

from demo import cli as demo_cli
from demo import shop as demo_oltp
from jobs.common.paths import Lake
from tests.airflow_env import REPO, airflow, embedded_env
from tests.integration.conftest import free_port


def call(base: str, method: str, path: str, body: dict | None = None) -> dict:
    request = urllib.request.Request(f"{base}{path}", method=method, data=json.dumps(body).encode() if body else None,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


@pytest.fixture(scope="module")
def airflow_services(tmp_path_factory):
    home = tmp_path_factory.mktemp("airflow-services")
    lake = Lake((home / "lake").as_uri())
    port = free_port()
    env = embedded_env(home, lake.root)
    env.update({
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
        "AIRFLOW__API_AUTH__JWT_SECRET": "test-only-secret-" + "x" * 32,
        "AIRFLOW__SCHEDULER__MIN_FILE_PROCESS_INTERVAL": "5",
    })
    airflow(env, "db", "migrate")
    airflow(env, "pools", "set", "kafka_drain", "1", "serialises Kafka drains")
    demo_cli.main(["--start-date", "2026-11-19", "--days", "2", "--events-per-day", "2000", "--users", "300",
                         "--items", "100", "--lake-root", lake.root, "--oltp-from", "2026-11-20"])
    logs = [open(home / f"{name}.log", "wb") for name in ("api-server", "scheduler", "dag-processor")]
    procs = [subprocess.Popen(["airflow", name], env=env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
             for name, log in zip(("api-server", "scheduler", "dag-processor"), logs, strict=True)]
    base = f"http://127.0.0.1:{port}/api/v2"
    try:
        deadline = time.monotonic() + 180
        while True:  # up, and the DAG processor has registered the DAG
            try:
                call(base, "GET", "/dags/nightly")
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("Airflow API server / DAG processor did not come up") from None
                time.sleep(2)
        yield base, home
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
        for log in logs:
            log.close()


def task_states(base: str, dag_id: str, run_id: str) -> dict[str, str | None]:
    tasks = call(base, "GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances")["task_instances"]
    return {t["task_id"]: t["state"] for t in tasks}


def run_to_end(base: str, dag_id: str, conf: dict, stall_seconds: float = 900,
               overall_seconds: float = 3600) -> tuple[str, dict[str, str]]:
    """Trigger a DAG run as the UI does (params in conf), unpause, and wait while its tasks make progress.

    A loaded machine may take long, so the wait follows the task states: it fails only when nothing changed
    for `stall_seconds` (or after `overall_seconds`), naming the tasks that were still running."""
    run = call(base, "POST", f"/dags/{dag_id}/dagRuns", {"logical_date": None, "conf": conf})
    call(base, "PATCH", f"/dags/{dag_id}", {"is_paused": False})
    started = last_change = time.monotonic()
    state, states = run["state"], {}
    while state not in ("success", "failed"):
        time.sleep(5)
        state = call(base, "GET", f"/dags/{dag_id}/dagRuns/{run['dag_run_id']}")["state"]
        now_states = task_states(base, dag_id, run["dag_run_id"])
        if now_states != states:
            states, last_change = now_states, time.monotonic()
        waiting = {t: s for t, s in states.items() if s not in ("success", "failed", "skipped", "upstream_failed")}
        if time.monotonic() - last_change > stall_seconds or time.monotonic() - started > overall_seconds:
            pytest.fail(f"{dag_id} run {run['dag_run_id']} made no progress for {stall_seconds:.0f}s "
                        f"(or ran over {overall_seconds:.0f}s); still not finished: {waiting}")
    return state, task_states(base, dag_id, run["dag_run_id"])


def test_trigger_with_params_through_the_api(airflow_services):
    base, home = airflow_services
    conf = demo_oltp.snapshot_params(Lake((home / "lake").as_uri()), "2026-11-20")
    state, states = run_to_end(base, "cdc_ingestion", conf)
    assert state == "success", (states, (home / "scheduler.log").read_text()[-3000:])
    assert states == {"resolve_run_date": "success", "drain_cdc": "skipped", "snapshot_requested": "success",
                      "cdc_snapshot": "success", "cdc_merge": "success", "privacy_erasure": "success",
                      "summarise_cdc": "success"}
    cdc = json.loads((home / "lake" / "reports" / "cdc" / "dt=2026-11-20" / "run.json").read_text())
    dumped = len((home / "lake" / "raw" / "_exports" / "oltp-2026-11-20" / "users.json").read_text().splitlines())
    assert cdc["tables"]["users"]["counts"]["events"]["r:applied"] == dumped  # the whole snapshot, via the UI params

    state, states = run_to_end(base, "nightly", {"run_date": "2026-11-20", "full_refresh": True,
                                                 "als_force_retrain": True, "als_params": {"rank": 12}})
    assert state == "success", (states, (home / "scheduler.log").read_text()[-3000:])
    # no reports bucket is configured here: publishing is skipped, the report stays in the lake
    assert states == {"resolve_run_date": "success", "drain_clickstream": "skipped", "wait_for_cdc": "success",
                      "clickstream_bronze": "success", "summarise_outputs": "success", "apply_retention": "success",
                      "ab_report": "success", "publish_ab_report": "skipped",
                      "als_due": "success", "als_train": "success", "summarise_als": "success",
                      "features_daily": "success"}
    als = json.loads((home / "lake" / "reports" / "als" / "dt=2026-11-20" / "run.json").read_text())
    assert als["params"]["rank"] == 12 and als["status"] == "skipped"  # the UI's params reached spark-submit
    assert (home / "lake" / "reports" / "ab" / "dt=2026-11-20" / "report.json").exists()
    manifest = json.loads((home / "lake" / "bronze" / "clickstream" / "dt=2026-11-20" / "_manifest.json").read_text())
    assert manifest["status"] == "published" and manifest["counts"]["bronze"] > 1_000
