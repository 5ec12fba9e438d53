"""The nightly DAG end to end, per task, at 1 M and 10 M events a day: Spark `local[*]` and a two-worker cluster.

For each size, one lake is prepared (not timed as the night, reported as set-up): `--history-days` days of
demo clickstream before the night's day D and D itself, at the same rate (`python -m demo`, users = events/20,
20,000 items, the shop database from D-1), bronze backfilled for the days before D (`clickstream_bronze` by
spark-submit) and the shop's tables onboarded from its dump (the `cdc_ingestion` DAG with the snapshot params).
Then, for each mode, on a fresh copy of that lake and a fresh Airflow home (SQLite), the night as the
scheduler would run it: `airflow dags test cdc_ingestion` (the merge of D) and `airflow dags test nightly`
(run_date D, `als_force_retrain` so ALS always trains). Wall times come from Airflow's own task instances.

Modes, on the same 2 cores: `local` (the embedded default, `spark_default` = `local[*]`, driver 4g) and
`cluster` (a standalone master and two one-core workers started with `spark-class` from the pyspark wheel,
executors 4g, the code shipped as the `--py-files` artifact; tests/spark_cluster.py), with `spark_default`
pointing at the master and `PIPELINE_CONFIG_DIR` adding the executors' Python to the Spark conf, as a team
pointing at its own cluster would.

`airflow dags test` runs the tasks one after another; a scheduler with the LocalExecutor would overlap the
independent Spark jobs (ab_report, als_train, features_daily), which on 2 cores shortens little.

    python benchmarks/nightly_end_to_end.py [--events-per-day 1000000,10000000] [--modes local,cluster]
        [--history-days 2] [--work /tmp/nightly-bench] [--out results.json] [--phase all|prepare|nights]

`--phase prepare` builds the lakes (the long part at 10 M) and keeps them in `--work`; `--phase nights` then
times the nights on them, e.g. on a quiet machine.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import shutil
import sqlite3
import sys
from pathlib import Path

import yaml
from submit import spark_submit, timed

from jobs.common import config

sys.path.insert(0, str(config.REPO_ROOT))  # the cluster the tests start: tests/spark_cluster.py
from tests.spark_cluster import Cluster  # noqa: E402

DAY = dt.date(2026, 11, 20)
ITEMS = 20_000
#: Tasks shown in the breakdown, in the order the night runs them; the rest are summed as "other".
SPARK_TASKS = ("cdc_merge", "privacy_erasure", "clickstream_bronze", "ab_report", "als_train", "features_daily")


def environment(lake: Path, home: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    return {**os.environ, "PIPELINE_LAKE_ROOT": lake.as_uri(), "AIRFLOW_HOME": str(home),
            "PIPELINE_CLICKSTREAM_SOURCE": "raw", "PIPELINE_MODE": "demo", **(extra or {})}


def airflow_home(home: Path, env: dict[str, str]) -> None:
    home.mkdir(parents=True)
    timed(["airflow", "db", "migrate"], env, home / "setup.log")
    timed(["airflow", "pools", "set", "kafka_drain", "1", "serialises Kafka drains"], env, home / "setup.log")


def dag_test(dag: str, conf: dict, env: dict[str, str], log: Path) -> float:
    seconds = timed(["airflow", "dags", "test", dag, "--conf", json.dumps(conf)], env, log)
    if not re.search(rf"DagRun Finished: dag_id={dag}\b.*state=success", log.read_text()):  # as pipeline.sh run_dag
        sys.exit(f"{dag} did not succeed; see {log}")
    return seconds


def task_seconds(home: Path) -> dict[str, float]:
    """Each task instance's wall time, from the Airflow metadata database (`dag_id.task_id`)."""
    with sqlite3.connect(home / "airflow.db") as db:
        found = db.execute("SELECT dag_id, task_id, start_date, end_date FROM task_instance "
                           "WHERE start_date IS NOT NULL AND end_date IS NOT NULL").fetchall()
    return {f"{dag}.{task}": round((dt.datetime.fromisoformat(end) - dt.datetime.fromisoformat(start))
                                   .total_seconds(), 1) for dag, task, start, end in found}


def prepare(base: Path, events: int, history_days: int) -> dict[str, float]:
    """The lake the nights start from; its set-up times."""
    lake, home = base / "lake", base / "airflow"
    env = environment(lake, home)
    first, before = DAY - dt.timedelta(days=history_days), DAY - dt.timedelta(days=1)
    times = {"generate": timed([sys.executable, "-m", "demo", "--start-date", first.isoformat(),
                                "--days", str(history_days + 1), "--events-per-day", str(events),
                                "--users", str(events // 20), "--items", str(ITEMS),
                                "--oltp-from", before.isoformat(), "--lake-root", lake.as_uri()],
                               env, base / "generate.log")}
    times["backfill_bronze"] = spark_submit("clickstream_bronze", ["--date", first.isoformat(), "--end-date",
                                                                   before.isoformat(), "--lake-root", lake.as_uri()],
                                            env, base / "backfill.log")
    airflow_home(home, env)
    from demo.shop import snapshot_params
    from jobs.common.paths import Lake
    times["cdc_onboarding"] = dag_test("cdc_ingestion", snapshot_params(Lake(lake.as_uri()), before.isoformat()),
                                       env, base / "onboarding.log")
    return {k: round(v, 1) for k, v in times.items()}


def cluster_settings(where: Path, cluster: Cluster) -> Path:
    """A `PIPELINE_CONFIG_DIR` whose pipeline.yaml is the project's plus what this cluster needs."""
    raw = yaml.safe_load(config.settings_path("pipeline.yaml").read_text())
    # the project's conf over the cluster's test sizing (4 shuffle partitions, 1g driver); executors of 4g
    raw["spark_conf"] = {**cluster.conf(), **raw["spark_conf"], "spark.executor.memory": "4g"}
    where.mkdir(parents=True, exist_ok=True)
    (where / "pipeline.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    return where


def link_raw_copy_rest(source: str, target: str) -> None:
    """The night's copy of the prepared lake: the raw zone (19 GB at 10 M/day, only ever read) hard-linked, the
    rest (rewritten by rename, but lock files are updated in place) copied."""
    if f"{os.sep}raw{os.sep}" in source:
        os.link(source, target)
    else:
        shutil.copy2(source, target)


def night(base: Path, mode: str, extra: dict[str, str]) -> dict:
    lake, home = base / mode / "lake", base / mode / "airflow"
    shutil.rmtree(base / mode, ignore_errors=True)
    shutil.copytree(base / "lake", lake, copy_function=link_raw_copy_rest)
    env = environment(lake, home, extra)
    airflow_home(home, env)
    walls = {"cdc_ingestion": dag_test("cdc_ingestion", {"run_date": DAY.isoformat()}, env, home / "cdc.log"),
             "nightly": dag_test("nightly", {"run_date": DAY.isoformat(), "als_force_retrain": True}, env,
                                 home / "nightly.log")}
    tasks = task_seconds(home)
    return {"mode": mode, "wall_s": {k: round(v, 1) for k, v in walls.items()},
            "end_to_end_s": round(sum(walls.values()), 1), "tasks_s": tasks}


def breakdown(result: dict) -> dict[str, float]:
    """The Spark tasks by name, everything else (Python tasks, sensors, Airflow's own start-up) as `other`."""
    tasks = {name.split(".", 1)[1]: s for name, s in result["tasks_s"].items()}
    shown = {name: tasks.get(name, 0.0) for name in SPARK_TASKS}
    shown["other"] = round(result["end_to_end_s"] - sum(shown.values()), 1)
    return shown


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events-per-day", default="1000000,10000000")
    parser.add_argument("--modes", default="local,cluster")
    parser.add_argument("--history-days", type=int, default=2)
    parser.add_argument("--work", type=Path, default=Path("/tmp/nightly-bench"))
    parser.add_argument("--out", type=Path, default=None, help="also write the results as JSON here")
    parser.add_argument("--phase", choices=("all", "prepare", "nights"), default="all",
                        help="prepare: only the lakes (kept in --work); nights: only the nights, on prepared lakes")
    args = parser.parse_args()
    results = []
    for events in [int(n) for n in args.events_per_day.split(",")]:
        base = args.work / f"{events}"
        if args.phase == "nights":
            setup = json.loads((base / "setup.json").read_text())
        else:
            shutil.rmtree(base, ignore_errors=True)
            base.mkdir(parents=True)
            setup = prepare(base, events, args.history_days)
            (base / "setup.json").write_text(json.dumps(setup))
        print(json.dumps({"events_per_day": events, "setup_s": setup}), flush=True)
        if args.phase == "prepare":
            continue
        for mode in args.modes.split(","):
            if mode == "local":
                result = night(base, mode, {})
            else:
                cluster = Cluster(base / "spark-cluster").start(workers=2, cores=1, memory="5g")
                try:
                    result = night(base, mode, {
                        "AIRFLOW_CONN_SPARK_DEFAULT": json.dumps({"conn_type": "spark", "host": "spark://127.0.0.1",
                                                                  "port": cluster.port}),
                        "PIPELINE_CONFIG_DIR": str(cluster_settings(base / "cluster-config", cluster))})
                finally:
                    cluster.stop()
            results.append({"events_per_day": events, "setup_s": setup, **result})
            print(json.dumps(results[-1]), flush=True)
            shutil.rmtree(base / mode / "lake", ignore_errors=True)
    report(results)
    if args.out:
        args.out.write_text(json.dumps(results, indent=1))


def report(results: list[dict]) -> None:
    print("\n| events/day | mode | " + " | ".join(SPARK_TASKS) + " | other | end to end |")
    print("|---|---|" + "---|" * (len(SPARK_TASKS) + 2))
    for r in results:
        shown = breakdown(r)
        print(f"| {r['events_per_day']:,} | {r['mode']} | " + " | ".join(f"{shown[n]:.0f} s" for n in shown)
              + f" | **{r['end_to_end_s']:.0f} s** |")
    by = {(r["events_per_day"], r["mode"]): r["end_to_end_s"] for r in results}
    sizes = sorted({r["events_per_day"] for r in results})
    for mode in sorted({r["mode"] for r in results}):
        if len(sizes) > 1 and (sizes[0], mode) in by and (sizes[-1], mode) in by:
            print(f"{mode}: {sizes[-1] // sizes[0]}x the events took {by[sizes[-1], mode] / by[sizes[0], mode]:.2f}x "
                  "the time (goal: at most 6x)")
    for size in sizes:
        if (size, "local") in by and (size, "cluster") in by:
            print(f"{size:,} events/day: cluster / local = {by[size, 'cluster'] / by[size, 'local']:.2f}")


if __name__ == "__main__":
    main()
