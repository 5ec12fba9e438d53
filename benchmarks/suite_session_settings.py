"""What the test suite's in-process SparkSession spends on small queries, as it was (compiled expressions,
adaptive execution, four shuffle partitions) and with the tests' small-query settings (`SMALL_QUERY_CONF` in
tests/conftest.py: interpreted expressions, no adaptive re-planning, two shuffle partitions).

Two workloads the Spark tier is made of, each in a fresh JVM per variant and repeat (the tests' JVM options),
timed after a warm-up: the CDC property test's merges (random change sequences merged in order, in three
batches and replayed) and the bronze job in-process on a small demo day (GX gate included). The suite is bound
by CPU (two test processes on two cores), so the figures that count are CPU times: the JVM's and its Python
workers'. The merges run once more with the small-query settings and their input frames as Python rows, as
before `in_jvm` (tests/conftest.py): every query scanning such a frame runs Python worker tasks again.

    python benchmarks/suite_session_settings.py [--sequences 4] [--events 3000] [--repeats 2]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
from submit import demo_lake, medians

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # the tests' settings and workloads (tests/ is not an installed package)
VARIANTS = ("before (compiled, adaptive, 4 partitions)", "the tests' small-query settings")
DAY = "2026-11-20"
#: the session's setting before the small-query settings (compiled expressions and adaptive execution: Spark's defaults)
BEFORE = {"spark.sql.shuffle.partitions": "4"}


def session(small_queries: bool):
    from pyspark.sql import SparkSession

    from tests.conftest import SESSION_CONF, SMALL_QUERY_CONF

    builder = SparkSession.builder.master("local[2]").appName("session-settings")
    for key, value in {**SESSION_CONF, **(SMALL_QUERY_CONF if small_queries else BEFORE)}.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def jvm(spark) -> psutil.Process:
    """The session's JVM (the Python process's child)."""
    return psutil.Process(int(spark.sparkContext._jvm.java.lang.ProcessHandle.current().pid()))


def jvm_cpu(spark) -> float:
    """CPU seconds of the session's JVM so far."""
    times = jvm(spark).cpu_times()
    return times.user + times.system


def python_workers_cpu(spark) -> float:
    """CPU seconds of the JVM's Python workers so far (pyspark.daemon and the workers it forked, ended or not)."""
    total = 0.0
    for child in jvm(spark).children(recursive=True):
        times = child.cpu_times()
        total += times.user + times.system + times.children_user + times.children_system
    return total


def merges(spark, sequences: int, python_rows: bool = False) -> None:
    from tests.spark import test_cdc_properties as cdc

    if python_rows:  # the frames as the test built them before in_jvm: an RDD of the rows, pickled by Python
        cdc.in_jvm = lambda frame: frame.sparkSession.createDataFrame(frame.collect(), frame.schema)

    rnd = random.Random(7)
    for _ in range(sequences):
        steps = [(rnd.choice("cudt"), rnd.randint(1, 4), rnd.choice(["basic", "pro", None]))
                 for _ in range(rnd.randint(1, 30))]
        events = cdc.events(steps)
        cdc.merged(spark, [events])
        cdc.merged(spark, [events[: len(events) // 2], events[len(events) // 2:]])
        cdc.merged(spark, [events, events[::-1]])


def bronze_day(lake: str) -> None:
    from jobs import clickstream_bronze

    assert clickstream_bronze.main(["--date", DAY, "--lake-root", lake, "--refresh", "full"]) == 0


def measure(workload: str, small_queries: bool, size: int, lake: str) -> dict[str, float]:
    """One variant in this (fresh) process: warm up once, then time the workload."""
    from jobs.common import runner

    runner.Context.stop = lambda self: None  # the jobs share this session, as in the tests
    spark = session(small_queries)

    def run(sequences: int) -> None:
        bronze_day(lake) if workload == "bronze" else merges(spark, sequences, workload == "merges_python_rows")

    run(1)  # warm-up: the first queries load Spark's classes (and the day is published before its rebuild)
    cpu, workers, python = jvm_cpu(spark), python_workers_cpu(spark), resource.getrusage(resource.RUSAGE_SELF)
    started = time.monotonic()
    run(size)
    after = resource.getrusage(resource.RUSAGE_SELF)
    return {"wall": time.monotonic() - started, "jvm_cpu": jvm_cpu(spark) - cpu,
            "workers_cpu": python_workers_cpu(spark) - workers,
            "python_cpu": after.ru_utime + after.ru_stime - python.ru_utime - python.ru_stime}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sequences", type=int, default=4, help="random change sequences (3 merges each)")
    parser.add_argument("--events", type=int, default=3000, help="events of the bronze day")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--measure", nargs=3, metavar=("WORKLOAD", "SMALL", "LAKE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        workload, small, lake = args.measure
        print(json.dumps(measure(workload, small == "1", args.sequences, lake)))
        return
    from tests.conftest import SHORT_RUN_JVM_OPTIONS, class_data_sharing

    env = {"SPARK_SUBMIT_OPTS": SHORT_RUN_JVM_OPTIONS + class_data_sharing(), "PIPELINE_MODE": "demo",
           "PYTHONPATH": str(REPO), "GX_ANALYTICS_ENABLED": "False"}
    by_workload: dict[str, dict[str, dict[str, float]]] = {}
    with tempfile.TemporaryDirectory(prefix="session-settings-") as tmp:
        lake = (Path(tmp) / "lake").as_uri()
        demo_lake(lake, DAY, 1, args.events, 300)
        merges_label = f"CDC property merges ({args.sequences} sequences x 3 merges)"
        for workload, label, variants in (
                ("merges", merges_label, VARIANTS),
                ("merges_python_rows", f"{merges_label}, frames as Python rows", VARIANTS[1:]),
                ("bronze", f"bronze job in-process, one day of {args.events:,} events", VARIANTS)):
            runs: dict[str, list[dict[str, float]]] = {v: [] for v in variants}
            for _ in range(args.repeats):
                for variant in variants:
                    small = VARIANTS.index(variant)
                    done = subprocess.run([sys.executable, __file__, "--sequences", str(args.sequences),
                                           "--measure", workload, str(small), lake], capture_output=True,
                                          text=True, cwd=REPO, env={**os.environ, **env}, check=False)
                    if done.returncode != 0:
                        sys.exit(f"{workload} ({variant}) failed:\n{done.stderr[-3000:]}")
                    runs[variant].append(json.loads(done.stdout.strip().splitlines()[-1]))
            print(f"{label} (median of {args.repeats}):")
            by_variant = {v: medians(measured) for v, measured in runs.items()}
            for variant, m in by_variant.items():
                print(f"  {variant}: {m['wall']:.1f} s wall, {m['jvm_cpu']:.1f} s JVM CPU, "
                      f"{m['workers_cpu']:.1f} s Python workers' CPU, {m['python_cpu']:.1f} s driver Python CPU")
            by_workload[workload] = by_variant
            if len(by_variant) == 2:
                default, small_settings = by_variant.values()
                print(f"  small-query settings: {default['jvm_cpu'] / small_settings['jvm_cpu']:.2f}x less JVM CPU, "
                      f"{default['wall'] / small_settings['wall']:.2f}x less wall time")
        held, rows = (by_workload[w][VARIANTS[1]] for w in ("merges", "merges_python_rows"))
        cpu = {name: m["jvm_cpu"] + m["workers_cpu"] + m["python_cpu"] for name, m in (("held", held), ("rows", rows))}
        print(f"frames held by the JVM (in_jvm) against Python rows, small-query settings: "
              f"{cpu['rows'] / cpu['held']:.2f}x less CPU in all, {rows['wall'] / held['wall']:.2f}x less wall time")


if __name__ == "__main__":
    main()
